//! The names of a ticket tier's keys in Redis. stock-svc owns them; order-svc reads the tier's
//! sold-out flag (field `sold_out` of the meta hash) to refuse an order at once. Every key of
//! one tier carries the hash tag `{tier:ID}`, so a Redis Cluster keeps them on one shard.

/// The hash of the tier's counters and rules (`total`, `available`, ..., `sold_out`).
pub fn meta(prefix: &str, tier_id: i64) -> String {
    format!("{prefix}:{{tier:{tier_id}}}:meta")
}

/// The hash of the tier's fences (order number -> `D|C|R:quantity:user`).
pub fn fences(prefix: &str, tier_id: i64) -> String {
    format!("{prefix}:{{tier:{tier_id}}}:fences")
}

/// The hash of each buyer's tickets held (deducted or confirmed).
pub fn users(prefix: &str, tier_id: i64) -> String {
    format!("{prefix}:{{tier:{tier_id}}}:users")
}

/// The field of [`meta`] that is 1 while the tier is sold out.
pub const SOLD_OUT_FIELD: &str = "sold_out";

/// The default prefix.
pub const DEFAULT_PREFIX: &str = "stock";

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_of_a_tier_shares_its_hash_tag() {
        for key in [
            super::meta("stock", 42),
            super::fences("stock", 42),
            super::users("stock", 42),
        ] {
            assert!(key.starts_with("stock:{tier:42}:"), "{key}");
        }
    }
}

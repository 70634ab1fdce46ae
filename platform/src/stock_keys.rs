//! The names of the live stock's keys in Redis. stock-svc owns the counters, fences and
//! holdings; order-svc owns a tier's promises and requests (its admission, see below) and reads
//! the tier's `available` to admit an order.
//!
//! A buyer's limit is the session's, counted across every tier of the session in one script,
//! so every key of one show session's tiers carries the session's hash tag `{session:ID}`: a
//! Redis Cluster keeps a session on one shard, and sessions (not tiers) spread over the shards.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{session:S}:meta` | hash | the session's rules: `per_user_limit` |
//! | `P:{session:S}:users` | hash | buyer -> tickets held (deducted or confirmed) in every tier of the session |
//! | `P:{session:S}:tier:T:meta` | hash | tier T's counters and rules (`total`, `available`, ..., `tier_limit`, `sold_out`) |
//! | `P:{session:S}:tier:T:fences` | hash | order number -> `D\|C\|R:quantity:user` |
//! | `P:{session:S}:tier:T:users` | hash | buyer -> tickets held in tier T |
//! | `P:{session:S}:tier:T:promises` | hash | order number -> tickets promised to an accepted order not yet prededucted; `_total` their sum |
//! | `P:{session:S}:tier:T:promised_at` | sorted set | order number scored by when it was promised (ms), so old promises can be let go |
//! | `P:{session:S}:tier:T:requests` | hash | `user_id request_id` -> the order number admitted for that request |
//!
//! `P` is the key prefix (`redis.key_prefix`, default `stock`). The session's `users` is the sum
//! of its tiers' `users`, kept by the same scripts, and recomputed from them whenever a tier of
//! the session is rebuilt.
//!
//! **Admission.** order-svc accepts a new order only while the tier's `available` exceeds the
//! tickets already promised to accepted orders whose prededuct has not run yet; the promise is
//! let go by the prededuct (whatever its outcome), by a rollback, or once it is older than the
//! admission hold. So buyers are told "accepted" for about as many tickets as there are, not for
//! every order that arrives before the saga's prededuct sets the sold-out flag. The promises
//! only advise: the prededuct stays the gate that decides, so a promise lost (Redis restarted
//! empty) or let go early costs at most some over-acceptance, never a ticket sold twice.

/// The hash of a session's rules (`per_user_limit`). It also says that the session's buyers'
/// holdings ([`session_users`]) are loaded.
pub fn session_meta(prefix: &str, session_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:meta")
}

/// The hash of each buyer's tickets held (deducted or confirmed) across every tier of a session.
pub fn session_users(prefix: &str, session_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:users")
}

/// The hash of a tier's counters and rules (`total`, `available`, ..., `sold_out`).
pub fn meta(prefix: &str, session_id: i64, tier_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:tier:{tier_id}:meta")
}

/// The hash of a tier's fences (order number -> `D|C|R:quantity:user`).
pub fn fences(prefix: &str, session_id: i64, tier_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:tier:{tier_id}:fences")
}

/// The hash of each buyer's tickets held (deducted or confirmed) in one tier.
pub fn users(prefix: &str, session_id: i64, tier_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:tier:{tier_id}:users")
}

/// The hash of the tickets promised to accepted orders not yet prededucted (order number ->
/// quantity, and [`PROMISED_TOTAL_FIELD`] their sum).
pub fn promises(prefix: &str, session_id: i64, tier_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:tier:{tier_id}:promises")
}

/// The sorted set of promised order numbers, scored by when they were promised (ms).
pub fn promised_at(prefix: &str, session_id: i64, tier_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:tier:{tier_id}:promised_at")
}

/// The hash of admitted requests (`user_id request_id` -> order number).
pub fn requests(prefix: &str, session_id: i64, tier_id: i64) -> String {
    format!("{prefix}:{{session:{session_id}}}:tier:{tier_id}:requests")
}

/// The field of [`promises`] holding the sum of the promised tickets.
pub const PROMISED_TOTAL_FIELD: &str = "_total";

/// `release_promise(promises, promised_at, order_no)`, a Lua function the scripts that end a
/// promise start with (the admission's, the prededuct and the rollback).
pub const RELEASE_PROMISE_LUA: &str = include_str!("release_promise.lua");

/// The field of [`meta`] that is 1 while the tier is sold out.
pub const SOLD_OUT_FIELD: &str = "sold_out";

/// The default prefix.
pub const DEFAULT_PREFIX: &str = "stock";

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_of_a_session_shares_its_hash_tag() {
        for key in [
            super::session_meta("stock", 7),
            super::session_users("stock", 7),
            super::meta("stock", 7, 42),
            super::fences("stock", 7, 42),
            super::users("stock", 7, 42),
            super::promises("stock", 7, 42),
            super::promised_at("stock", 7, 42),
            super::requests("stock", 7, 42),
        ] {
            assert!(key.starts_with("stock:{session:7}:"), "{key}");
        }
    }

    #[test]
    fn the_keys_of_two_tiers_of_one_session_differ() {
        assert_ne!(super::meta("stock", 7, 42), super::meta("stock", 7, 43));
        assert_ne!(
            super::users("stock", 7, 42),
            super::session_users("stock", 7)
        );
    }
}

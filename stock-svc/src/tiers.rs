//! The rules of each ticket tier (total, per-buyer limits, price, sale window), read from the
//! catalog once and kept in memory: tiers and sessions do not change after they are created,
//! and the hot path must not ask Postgres for them on every prededuct.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sea_orm::{DatabaseConnection, EntityTrait};

use crate::catalog::entity::{session, tier};
use crate::error::Error;
use crate::gate::{Fence, TierRef, TierStock};

/// A tier's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRules {
    pub tier_id: i64,
    pub session_id: i64,
    pub total: i64,
    /// The most tickets one buyer may hold across every tier of the session.
    pub session_limit: i64,
    /// The most tickets of this tier one buyer may hold; 0 when only the session's limit applies.
    pub tier_limit: i64,
    pub price_cents: i64,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
}

impl TierRules {
    pub fn from_models(tier: &tier::Model, session: &session::Model) -> Self {
        Self {
            tier_id: tier.id,
            session_id: tier.session_id,
            total: tier.total,
            session_limit: i64::from(session.per_user_limit),
            tier_limit: i64::from(tier.per_user_limit),
            price_cents: tier.price_cents,
            opens_at_ms: session.sale_opens_at.timestamp_millis(),
            closes_at_ms: session.sale_closes_at.timestamp_millis(),
        }
    }

    /// Where the tier's keys are.
    pub fn tier_ref(&self) -> TierRef {
        TierRef {
            session_id: self.session_id,
            tier_id: self.tier_id,
        }
    }

    /// The most tickets of this tier one buyer may hold, when they hold none elsewhere in the
    /// session: the session's limit, or the tier's own when it is lower.
    pub fn buyer_limit(&self) -> i64 {
        buyer_limit(self.session_limit, self.tier_limit)
    }

    /// What Redis is loaded with; `fences` as the ledger holds them, `None` when not read.
    pub fn stock(&self, fences: Option<Vec<Fence>>) -> TierStock {
        TierStock {
            tier_id: self.tier_id,
            total: self.total,
            opens_at_ms: self.opens_at_ms,
            closes_at_ms: self.closes_at_ms,
            tier_limit: self.tier_limit,
            price_cents: self.price_cents,
            fences,
        }
    }
}

/// The most tickets of a tier one buyer may hold: the session's limit, or the tier's own when
/// it has one (above 0) that is lower.
pub fn buyer_limit(session_limit: i64, tier_limit: i64) -> i64 {
    if tier_limit > 0 {
        session_limit.min(tier_limit)
    } else {
        session_limit
    }
}

/// Tier rules by id, filled from Postgres on first use.
#[derive(Clone)]
pub struct Tiers {
    db: DatabaseConnection,
    known: Arc<RwLock<HashMap<i64, Arc<TierRules>>>>,
}

impl Tiers {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            known: Arc::default(),
        }
    }

    /// The tier's rules; `NotFound` when the catalog has no such tier.
    pub async fn get(&self, tier_id: i64) -> Result<Arc<TierRules>, Error> {
        if let Some(rules) = self.cached(tier_id) {
            return Ok(rules);
        }
        let Some(tier) = tier::Entity::find_by_id(tier_id).one(&self.db).await? else {
            return Err(Error::NotFound(format!("tier {tier_id} does not exist")));
        };
        let Some(session) = session::Entity::find_by_id(tier.session_id)
            .one(&self.db)
            .await?
        else {
            return Err(Error::NotFound(format!(
                "session {} of tier {tier_id} does not exist",
                tier.session_id
            )));
        };
        let rules = Arc::new(TierRules::from_models(&tier, &session));
        if let Ok(mut known) = self.known.write() {
            known.insert(tier_id, Arc::clone(&rules));
        }
        Ok(rules)
    }

    fn cached(&self, tier_id: i64) -> Option<Arc<TierRules>> {
        self.known.read().ok()?.get(&tier_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::buyer_limit;

    #[test]
    fn a_tier_caps_a_buyer_below_the_session_only() {
        assert_eq!(buyer_limit(6, 0), 6, "no cap of its own");
        assert_eq!(buyer_limit(6, 2), 2);
        assert_eq!(buyer_limit(4, 4), 4);
        assert_eq!(buyer_limit(4, 9), 4, "the session's limit still holds");
    }
}

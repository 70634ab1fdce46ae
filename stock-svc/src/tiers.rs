//! The rules of each ticket tier (total, per-user limit, price, sale window), read from the
//! catalog once and kept in memory: tiers do not change after they are created, and the hot
//! path must not ask Postgres for them on every prededuct.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sea_orm::{DatabaseConnection, EntityTrait};

use crate::catalog::entity::{session, tier};
use crate::error::Error;
use crate::gate::TierStock;

/// A tier's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRules {
    pub tier_id: i64,
    pub total: i64,
    pub per_user_limit: i64,
    pub price_cents: i64,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
}

impl TierRules {
    pub fn from_models(tier: &tier::Model, session: &session::Model) -> Self {
        Self {
            tier_id: tier.id,
            total: tier.total,
            per_user_limit: i64::from(tier.per_user_limit),
            price_cents: tier.price_cents,
            opens_at_ms: session.sale_opens_at.timestamp_millis(),
            closes_at_ms: session.sale_closes_at.timestamp_millis(),
        }
    }

    /// What Redis is loaded with, given the fences the ledger holds.
    pub fn stock(&self, fences: Vec<crate::gate::Fence>) -> TierStock {
        TierStock {
            tier_id: self.tier_id,
            total: self.total,
            opens_at_ms: self.opens_at_ms,
            closes_at_ms: self.closes_at_ms,
            per_user_limit: self.per_user_limit,
            price_cents: self.price_cents,
            fences,
        }
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

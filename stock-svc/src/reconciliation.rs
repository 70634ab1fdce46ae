//! Redis against the ledger, tier by tier: `Reconcile`, the drift job and the check after
//! Redis started anew compare them counters and fence by fence; the repair rule rebuilds a
//! tier from the ledger.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;

use crate::error::Error;
use crate::gate::{Fence, TierCounters};
use crate::ledger;
use crate::stock::Stock;
use crate::tiers::TierRules;

/// Redis against the ledger for one tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciliation {
    pub tier_id: i64,
    pub redis: TierCounters,
    pub ledger: TierCounters,
    /// Orders whose fence differs, sorted.
    pub drifting_orders: Vec<String>,
}

impl Reconciliation {
    pub fn drift(&self) -> bool {
        self.redis.available != self.ledger.available
            || self.redis.deducted != self.ledger.deducted
            || self.redis.confirmed != self.ledger.confirmed
            || !self.drifting_orders.is_empty()
    }

    /// In words, for logs and operators.
    pub fn report(&self) -> String {
        if !self.drift() {
            return format!(
                "tier {}: Redis and the ledger agree (available {}, deducted {}, confirmed {})",
                self.tier_id, self.redis.available, self.redis.deducted, self.redis.confirmed
            );
        }
        format!(
            "tier {}: Redis has available {} / deducted {} / confirmed {}, the ledger {} / {} / {}; \
             {} order(s) differ{}",
            self.tier_id,
            self.redis.available,
            self.redis.deducted,
            self.redis.confirmed,
            self.ledger.available,
            self.ledger.deducted,
            self.ledger.confirmed,
            self.drifting_orders.len(),
            match self.drifting_orders.first() {
                Some(first) => format!(", e.g. {first}"),
                None => String::new(),
            }
        )
    }
}

impl Stock {
    /// Compares Redis with the ledger, counters and fence by fence.
    pub async fn reconcile(&self, tier_id: i64) -> Result<Reconciliation, Error> {
        let rules = self.tiers.get(tier_id).await?;
        let redis = self.counters(&rules).await?;
        self.compare(&self.record, &rules, redis).await
    }

    /// [`Stock::reconcile`] of Redis' `redis` counters, reading the ledger through `conn`.
    pub(crate) async fn compare(
        &self,
        conn: &impl ConnectionTrait,
        rules: &TierRules,
        redis: TierCounters,
    ) -> Result<Reconciliation, Error> {
        let tier_id = rules.tier_id;
        let redis_fences: HashMap<String, Fence> = self
            .gate
            .fences(rules.tier_ref())
            .await?
            .into_iter()
            .map(|f| (f.order_no.clone(), f))
            .collect();
        let ledger_fences: HashMap<String, Fence> = ledger::fences(conn, tier_id)
            .await?
            .into_iter()
            .map(|f| (f.order_no.clone(), f))
            .collect();
        let totals = ledger::totals(conn, tier_id).await?;
        let ledger = TierCounters {
            total: rules.total,
            available: rules.total - totals.deducted - totals.confirmed,
            deducted: totals.deducted,
            confirmed: totals.confirmed,
            sold_out: rules.total - totals.deducted - totals.confirmed == 0,
        };
        let mut drifting_orders: Vec<String> = redis_fences
            .iter()
            .filter(|(order, fence)| ledger_fences.get(*order) != Some(*fence))
            .map(|(order, _)| order.clone())
            .chain(
                ledger_fences
                    .keys()
                    .filter(|order| !redis_fences.contains_key(*order))
                    .cloned(),
            )
            .collect();
        drifting_orders.sort();
        Ok(Reconciliation {
            tier_id,
            redis,
            ledger,
            drifting_orders,
        })
    }

    /// The repair rule: the ledger is the record. Drops the tier from Redis and rebuilds it
    /// from the ledger, the buyers' holdings in its session computed afresh. Fences Redis held
    /// without a ledger row belong to commands whose reply never left; their senders retry
    /// them and the retry runs on the rebuilt tier.
    pub async fn repair(&self, tier_id: i64) -> Result<Reconciliation, Error> {
        let rules = self.tiers.get(tier_id).await?;
        self.gate.forget(rules.tier_ref()).await?;
        self.rebuild(&rules).await?;
        self.reconcile(tier_id).await
    }
}

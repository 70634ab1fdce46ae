//! The periodic drift check: every tier on sale (or closed less than a day ago) is reconciled,
//! Redis against the ledger. Commands in flight (script run, record not yet committed) show as
//! drift for a moment, so a tier is reported as drifting only when the same drift is seen on
//! two checks in a row; then the repair rule applies (see README, "Reconciliation").

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::reconciliation::Reconciliation;
use crate::stock::Stock;

/// Remembers the last check's drift of each tier.
pub struct DriftWatch {
    stock: Stock,
    last: HashMap<i64, Reconciliation>,
}

impl DriftWatch {
    pub fn new(stock: Stock) -> Self {
        Self {
            stock,
            last: HashMap::new(),
        }
    }

    /// Checks every tier once; returns the tiers whose drift persisted since the last check.
    pub async fn check_once(&mut self) -> Result<Vec<Reconciliation>, Error> {
        let rows = self
            .stock
            .db
            .query_all_raw(Statement::from_string(
                self.stock.db.get_database_backend(),
                "SELECT t.id FROM tier t JOIN session s ON s.id = t.session_id \
                 WHERE s.sale_closes_at > now() - interval '1 day' ORDER BY t.id",
            ))
            .await?;
        let mut persistent = Vec::new();
        let mut seen = HashMap::new();
        for row in rows {
            let tier_id: i64 = row.try_get("", "id")?;
            let now = self.stock.reconcile(tier_id).await?;
            if !now.drift() {
                continue;
            }
            if self.last.get(&tier_id) == Some(&now) {
                tracing::error!(
                    tier_id,
                    report = %now.report(),
                    "stock drift persisted across two checks; repair with Reconcile(repair)"
                );
                self.stock.metrics.drift_found.inc();
                persistent.push(now.clone());
            } else {
                tracing::info!(tier_id, report = %now.report(), "stock drift (may be in flight)");
            }
            seen.insert(tier_id, now);
        }
        self.last = seen;
        Ok(persistent)
    }

    /// Checks every `interval` until the task is aborted.
    pub fn spawn(mut self, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(err) = self.check_once().await {
                    tracing::warn!(error = %err, "drift check failed");
                }
            }
        })
    }
}

//! Redis that went back in time: a restart from an older snapshot, or a replica promoted that
//! missed writes, still holds a session's tiers, with fewer tickets deducted than the ledger
//! records. Every fence-changing script refuses a tier not checked since Redis started
//! ([`GateError::Unverified`](crate::gate::GateError::Unverified)); this checks the whole
//! session (a buyer's limit spans its tiers) against the ledger, the record, and rebuilds from
//! it every tier that differs, before the script runs again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::catalog::entity::tier;
use crate::error::Error;
use crate::gate::Verified;
use crate::stock::Stock;
use crate::tiers::TierRules;

/// A lock per session, so the buyers who all find a session unchecked after a restart wait for
/// one check instead of each making their own.
#[derive(Clone, Default)]
pub struct SessionChecks(Arc<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>);

impl SessionChecks {
    fn of(&self, session_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut sessions = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(sessions.entry(session_id).or_default())
    }
}

impl Stock {
    /// Checks every tier of `rules`' session against the ledger on Redis run `run_id`: a tier
    /// that agrees is marked checked; one that differs is dropped and rebuilt from the ledger,
    /// with the buyers' holdings in the session computed afresh. When Redis restarted again
    /// meanwhile, nothing is marked and the caller's next script asks again.
    pub async fn verify_session(&self, rules: &TierRules, run_id: &str) -> Result<(), Error> {
        let session = self.checks.of(rules.session_id);
        let _one_check_at_a_time = session.lock().await;
        if self.gate.checked_on(rules.tier_ref(), run_id).await? {
            // Checked (or rebuilt) while this call waited.
            return Ok(());
        }
        let tier_ids: Vec<i64> = tier::Entity::find()
            .filter(tier::Column::SessionId.eq(rules.session_id))
            .order_by_asc(tier::Column::Id)
            .all(&self.record)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let mut checked = Vec::with_capacity(tier_ids.len());
        for tier_id in tier_ids {
            let reconciliation = self.reconcile(tier_id).await?;
            if reconciliation.drift() {
                tracing::warn!(
                    tier_id,
                    report = %reconciliation.report(),
                    "Redis started anew behind the ledger; rebuilding the tier from the ledger"
                );
            }
            checked.push((tier_id, !reconciliation.drift()));
        }
        match self.gate.verify(rules.session_id, run_id, &checked).await? {
            Verified::Restarted => Ok(()),
            Verified::Checked { dropped } => {
                tracing::info!(
                    session_id = rules.session_id,
                    run_id,
                    rebuilt = ?dropped,
                    "session checked against the ledger after Redis started anew"
                );
                if !dropped.is_empty() {
                    self.rebuild(rules).await?;
                }
                Ok(())
            }
        }
    }
}

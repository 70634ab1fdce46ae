//! Redis that went back in time: a restart from an older snapshot, or a replica promoted that
//! missed writes, still holds a session's tiers, with fewer tickets deducted than the ledger
//! records. Every fence-changing script refuses a tier not checked since Redis started
//! ([`GateError::Unverified`](crate::gate::GateError::Unverified)); this checks the whole
//! session (a buyer's limit spans its tiers) against the ledger, the record, and rebuilds from
//! it every tier that differs, before the script runs again. The check waits for the records
//! on their way and refuses the late ones (`crate::ledger`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::TransactionTrait;

use crate::error::Error;
use crate::gate::Verified;
use crate::ledger;
use crate::rebuild::lock_session;
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
    /// Checks the tiers of `rules`' session against the ledger on Redis run `run_id`: a tier
    /// that agrees is stamped checked; one that differs is dropped and rebuilt from the ledger,
    /// with the buyers' holdings in the session computed afresh. When Redis restarted again
    /// meanwhile, nothing is marked and the caller's next script asks again. Tiers checked on
    /// this run already are left as they are, unless `refused` names a stamp the ledger
    /// refused and Redis still gives (Postgres missed the stamp of the last check): then every
    /// tier is checked, unless another check came since.
    ///
    /// The session's tiers are locked for update in Postgres from before the ledger is read
    /// until the new stamp is written in both (the check's Redis calls are local; the same lock
    /// serialises the checks and loads of every replica): so the check waits for each record
    /// taken, and any record whose script ran before it is refused (`crate::ledger`).
    pub async fn verify_session(
        &self,
        rules: &TierRules,
        run_id: &str,
        refused: Option<&str>,
    ) -> Result<(), Error> {
        let session = self.checks.of(rules.session_id);
        let _one_check_at_a_time = session.lock().await;
        let checked_on = |tier| self.gate.checked_on(tier, run_id);
        let done = |stamp: Option<String>| match (stamp, refused) {
            (Some(stamp), Some(refused)) => stamp != refused,
            (stamp, None) => stamp.is_some(),
            (None, Some(_)) => false,
        };
        if done(checked_on(rules.tier_ref()).await?) {
            // Checked (or rebuilt) while this call waited.
            return Ok(());
        }
        let txn = self.record.begin().await?;
        let (_, tiers) = lock_session(&txn, rules.session_id).await?;
        if let Some(refused) = refused {
            // Under the lock, which every replica's checks take: another check may have come
            // since, or Postgres may hold the refused stamp by now (a record refused between a
            // check's write to Redis and its commit).
            let now = checked_on(rules.tier_ref()).await?;
            let recorded = ledger::live_stamp(&txn, rules.tier_id).await?;
            if now.as_deref() != Some(refused) || recorded.as_deref() == Some(refused) {
                txn.rollback().await?;
                return Ok(());
            }
        }
        let mut checked = Vec::with_capacity(tiers.len());
        for tier_rules in tiers {
            let tier_id = tier_rules.tier_id;
            if refused.is_none() && checked_on(tier_rules.tier_ref()).await?.is_some() {
                // Loaded or checked on this run: live, and right.
                continue;
            }
            // A tier Redis does not hold is loaded (and stamped) by its next command.
            let Some(redis) = self.gate.counters(tier_rules.tier_ref()).await? else {
                continue;
            };
            let reconciliation = self.compare(&txn, &tier_rules, redis).await?;
            if reconciliation.drift() {
                tracing::warn!(
                    tier_id,
                    report = %reconciliation.report(),
                    "Redis behind the ledger; rebuilding the tier from the ledger"
                );
            }
            checked.push((tier_id, !reconciliation.drift()));
        }
        let stamp = ledger::new_stamp();
        let same: Vec<i64> = checked.iter().filter(|c| c.1).map(|c| c.0).collect();
        ledger::stamp(&txn, &same, &stamp).await?;
        match self
            .gate
            .verify(rules.session_id, run_id, &stamp, &checked)
            .await?
        {
            Verified::Restarted => {
                txn.rollback().await?;
                Ok(())
            }
            Verified::Checked { dropped } => {
                txn.commit().await?;
                tracing::info!(
                    session_id = rules.session_id,
                    run_id,
                    rebuilt = ?dropped,
                    "session checked against the ledger"
                );
                if !dropped.is_empty() {
                    self.rebuild(rules).await?;
                }
                Ok(())
            }
        }
    }
}

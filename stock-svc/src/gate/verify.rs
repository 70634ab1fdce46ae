//! Recording that a session's tiers were checked against the ledger after Redis started anew
//! (`verify.lua`): a tier that held what the ledger records is stamped with the running Redis'
//! `run_id`; one that did not is deleted, with its session's meta, to be rebuilt from the
//! ledger.

use fred::prelude::*;
use fred::types::Value;

use super::{GateError, Script, StockGate, TierRef};

/// What a verification did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The tiers were stamped, but for these, deleted: rebuild them from the ledger.
    Checked { dropped: Vec<i64> },
    /// Redis started again since the check was made: nothing was written; check again.
    Restarted,
}

impl StockGate {
    /// Whether `tier` was checked against the ledger (or loaded from it) on Redis run `run_id`.
    pub async fn checked_on(&self, tier: TierRef, run_id: &str) -> Result<bool, GateError> {
        let [meta, ..] = self.tier_keys(tier);
        let stamp: Option<String> = self.pool.next().hget(meta, "run_id").await?;
        Ok(stamp.as_deref() == Some(run_id))
    }

    /// Records the check of session `session_id`'s tiers made on Redis run `run_id`: each
    /// `(tier_id, same)` says whether Redis held what the ledger records. A tier checked or
    /// rebuilt by someone else meanwhile is left as it is.
    pub async fn verify(
        &self,
        session_id: i64,
        run_id: &str,
        tiers: &[(i64, bool)],
    ) -> Result<Verified, GateError> {
        let mut keys = self.session_keys(session_id);
        let mut args: Vec<Value> = vec![run_id.into()];
        for &(tier_id, same) in tiers {
            keys.extend(self.tier_keys(TierRef {
                session_id,
                tier_id,
            }));
            args.push(if same { "same" } else { "differs" }.into());
        }
        let reply: Vec<Value> = self.run(Script::Verify, keys, args).await?;
        let bad = || GateError::Protocol(format!("verify answered {reply:?}"));
        let (word, positions) = reply.split_first().ok_or_else(bad)?;
        match word.as_string().as_deref() {
            Some("RESTARTED") => Ok(Verified::Restarted),
            Some("VERIFIED") => {
                let dropped = positions
                    .iter()
                    .map(|p| {
                        let at = usize::try_from(p.as_i64()?).ok()?.checked_sub(1)?;
                        tiers.get(at).map(|&(tier_id, _)| tier_id)
                    })
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(bad)?;
                Ok(Verified::Checked { dropped })
            }
            _ => Err(bad()),
        }
    }
}

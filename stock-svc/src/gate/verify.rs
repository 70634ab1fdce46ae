//! Recording that a session's tiers were checked against the ledger after Redis started anew
//! or a record was refused (`verify.lua`): a tier that held what the ledger records is stamped
//! with the running Redis' `run_id` and the check's stamp; one that did not is deleted, with
//! its session's meta, to be rebuilt from the ledger.

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
    /// The stamp of `tier`'s last check against the ledger (or load from it), when that was
    /// made on Redis run `run_id`.
    pub async fn checked_on(
        &self,
        tier: TierRef,
        run_id: &str,
    ) -> Result<Option<String>, GateError> {
        let [meta, ..] = self.tier_keys(tier);
        let fields: Vec<Option<String>> = self
            .pool
            .next()
            .hmget(meta, vec!["run_id", "stamp"])
            .await?;
        Ok(match fields.as_slice() {
            [Some(run), Some(stamp)] if run == run_id => Some(stamp.clone()),
            _ => None,
        })
    }

    /// The running Redis' `run_id` (new on every start).
    pub async fn run_id(&self) -> Result<String, GateError> {
        let info: String = self
            .pool
            .next()
            .info(Some(fred::types::InfoKind::Server))
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| GateError::Protocol("INFO server has no run_id".into()))
    }

    /// Records the check of session `session_id`'s tiers made on Redis run `run_id`, with
    /// `stamp`: each `(tier_id, same)` says whether Redis held what the ledger records. The
    /// caller holds the tiers locked in Postgres ([`crate::verify`]).
    pub async fn verify(
        &self,
        session_id: i64,
        run_id: &str,
        stamp: &str,
        tiers: &[(i64, bool)],
    ) -> Result<Verified, GateError> {
        let mut keys = self.session_keys(session_id);
        let mut args: Vec<Value> = vec![run_id.into(), stamp.into()];
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

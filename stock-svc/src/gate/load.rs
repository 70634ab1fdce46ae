//! Putting a session's live stock into Redis: every tier Redis lacks, with the fences it is
//! rebuilt from, then the session's rules and its buyers' holdings across its tiers, in one
//! script (`load.lua`). A tier is never loaded twice, and a buyer's holdings in the session are
//! computed afresh from its tiers whenever one was loaded, so they are never counted twice.

use fred::types::Value;

use super::{Fence, FenceState, GateError, Script, StockGate, TierRef};

/// What a session is loaded with: its rules and every tier it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStock {
    pub session_id: i64,
    /// The most tickets one buyer may hold across every tier of the session.
    pub per_user_limit: i64,
    pub tiers: Vec<TierStock>,
}

/// One tier of a [`SessionStock`]: its rules and, when read from the ledger, every fence.
/// `deducted`, `confirmed` and the buyers' holdings follow from the fences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierStock {
    pub tier_id: i64,
    pub total: i64,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
    /// The most tickets of this tier one buyer may hold; 0 when only the session's limit applies.
    pub tier_limit: i64,
    pub price_cents: i64,
    /// `None` when the ledger was not read: Redis is expected to hold the tier. When it does
    /// not, the load answers [`SessionLoad::Missing`] and writes nothing.
    pub fences: Option<Vec<Fence>>,
}

impl TierStock {
    fn held(&self, state: FenceState) -> i64 {
        self.fences
            .iter()
            .flatten()
            .filter(|f| f.state == state)
            .map(|f| f.quantity)
            .sum()
    }

    /// The tier's part of the load script's arguments.
    fn args(&self, args: &mut Vec<Value>) -> Result<(), GateError> {
        let deducted = self.held(FenceState::Deducted);
        let confirmed = self.held(FenceState::Confirmed);
        let available = self.total - deducted - confirmed;
        if available < 0 {
            return Err(GateError::Protocol(format!(
                "tier {} holds {} tickets in its fences, above its total {}",
                self.tier_id,
                deducted + confirmed,
                self.total
            )));
        }
        let fences = self.fences.as_deref();
        let count = fences.map_or(-1, |f| i64::try_from(f.len()).unwrap_or(i64::MAX));
        args.extend(
            [
                self.tier_id,
                self.total,
                available,
                deducted,
                confirmed,
                self.opens_at_ms,
                self.closes_at_ms,
                self.tier_limit,
                self.price_cents,
                count,
            ]
            .into_iter()
            .map(Value::from),
        );
        for fence in fences.into_iter().flatten() {
            args.push(fence.order_no.as_str().into());
            args.push(fence.encode().into());
        }
        Ok(())
    }
}

/// What a load did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionLoad {
    /// The tiers this call put into Redis (none when Redis held them all already).
    Loaded(Vec<i64>),
    /// Nothing was written: Redis lacks these tiers, and their fences did not come with the
    /// call. Read them from the ledger and load again.
    Missing(Vec<i64>),
}

impl StockGate {
    /// Puts every tier of `session` that Redis lacks into it, with its fences, and the
    /// session's rules and buyers' holdings; a tier Redis holds is left as it is. Pass every
    /// tier the session has: the session's holdings are the sum over the tiers passed. A tier
    /// loaded carries `stamp` (the caller records it in Postgres, [`super::Prededucted::stamp`]).
    pub async fn load(
        &self,
        session: &SessionStock,
        stamp: &str,
    ) -> Result<SessionLoad, GateError> {
        let mut keys = self.session_keys(session.session_id);
        let mut args: Vec<Value> = vec![session.per_user_limit.into(), stamp.into()];
        for tier in &session.tiers {
            keys.extend(self.tier_keys(TierRef {
                session_id: session.session_id,
                tier_id: tier.tier_id,
            }));
            tier.args(&mut args)?;
        }
        let reply: Vec<Value> = self.run(Script::Load, keys, args).await?;
        let bad = || GateError::Protocol(format!("load answered {reply:?}"));
        let (word, tiers) = reply.split_first().ok_or_else(bad)?;
        let tiers = tiers
            .iter()
            .map(|t| t.as_string().and_then(|t| t.parse::<i64>().ok()))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(bad)?;
        match word.as_string().as_deref() {
            Some("LOADED") => Ok(SessionLoad::Loaded(tiers)),
            Some("MISSING") => Ok(SessionLoad::Missing(tiers)),
            _ => Err(bad()),
        }
    }
}

//! Putting a session's live stock into Redis from the catalog and the ledger: when a tier is
//! created, and when Redis lost a tier (or its session's holdings) and a call needs it.
//!
//! A buyer's limit counts every tier of the session, so the session is the unit: every tier of
//! it that Redis lacks is rebuilt from the ledger (`available = total - deducted - confirmed`,
//! fences included) in the same script that computes the buyers' holdings in the session
//! afresh. Tiers Redis still holds are kept as they are (their fences may be ahead of the
//! ledger, for commands whose record is still on its way).
//!
//! The session's tiers are locked for update from before the ledger is read until the load is
//! committed with the tiers' new stamp (`crate::ledger`): a record on its way commits before the
//! ledger is read, and one whose script ran on the Redis before the load is refused.

use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::catalog::entity::{session, tier};
use crate::error::Error;
use crate::gate::{GateError, SessionLoad, SessionStock, StockGate};
use crate::ledger;
use crate::tiers::TierRules;

/// Loads tried before giving up when tiers keep vanishing from Redis between two of them.
const ATTEMPTS: usize = 4;

/// Puts every tier of session `session_id` that Redis lacks into it, from the ledger, with the
/// session's rules and buyers' holdings, and stamps the tiers loaded. Locks the session's tiers
/// in `txn` and reads the catalog and the ledger through it (so a tier created in `txn` is among
/// them); the caller commits. Returns the tiers this call loaded: none when Redis held them all,
/// whoever else loaded them.
pub async fn load_session(
    txn: &DatabaseTransaction,
    gate: &StockGate,
    session_id: i64,
) -> Result<Vec<i64>, Error> {
    let (session, tiers) = lock_session(txn, session_id).await?;
    let mut stock = SessionStock {
        session_id,
        per_user_limit: i64::from(session.per_user_limit),
        tiers: tiers.iter().map(|t| t.stock(None)).collect(),
    };
    let stamp = ledger::new_stamp();
    for _ in 0..ATTEMPTS {
        match gate.load(&stock, &stamp).await? {
            SessionLoad::Loaded(loaded) => {
                ledger::stamp(txn, &loaded, &stamp).await?;
                return Ok(loaded);
            }
            SessionLoad::Missing(missing) => {
                for tier in stock
                    .tiers
                    .iter_mut()
                    .filter(|t| missing.contains(&t.tier_id))
                {
                    tier.fences = Some(ledger::fences(txn, tier.tier_id).await?);
                }
            }
        }
    }
    Err(Error::Gate(GateError::Protocol(format!(
        "the tiers of session {session_id} kept vanishing from Redis while they were loaded"
    ))))
}

/// Locks every tier of session `session_id` for update in `txn`, for a load into Redis or a
/// check of Redis against the ledger (`crate::ledger`: the records on their way commit first,
/// later ones wait and then meet the new stamp). The session and its tiers' rules, by id.
pub(crate) async fn lock_session(
    txn: &DatabaseTransaction,
    session_id: i64,
) -> Result<(session::Model, Vec<TierRules>), Error> {
    let tiers = tier::Entity::find()
        .filter(tier::Column::SessionId.eq(session_id))
        .order_by_asc(tier::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await?;
    let Some(session) = session::Entity::find_by_id(session_id).one(txn).await? else {
        return Err(Error::NotFound(format!(
            "session {session_id} does not exist"
        )));
    };
    let rules = tiers
        .iter()
        .map(|t| TierRules::from_models(t, &session))
        .collect();
    Ok((session, rules))
}

//! Putting a session's live stock into Redis from the catalog and the ledger: when a tier is
//! created, and when Redis lost a tier (or its session's holdings) and a call needs it.
//!
//! A buyer's limit counts every tier of the session, so the session is the unit: every tier of
//! it that Redis lacks is rebuilt from the ledger (`available = total - deducted - confirmed`,
//! fences included) in the same script that computes the buyers' holdings in the session
//! afresh. Tiers Redis still holds are kept as they are (their fences may be ahead of the
//! ledger, for commands whose record is still on its way).

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::catalog::entity::{session, tier};
use crate::error::Error;
use crate::gate::{GateError, SessionLoad, SessionStock, StockGate};
use crate::ledger;
use crate::tiers::TierRules;

/// Loads tried before giving up when tiers keep vanishing from Redis between two of them.
const ATTEMPTS: usize = 4;

/// Puts every tier of session `session_id` that Redis lacks into it, from the ledger, with the
/// session's rules and buyers' holdings. Reads the catalog through `conn` (so a tier created in
/// `conn`'s transaction is among them). Returns the tiers this call loaded: none when Redis
/// held them all, whoever else loaded them.
pub async fn load_session(
    conn: &impl ConnectionTrait,
    gate: &StockGate,
    session_id: i64,
) -> Result<Vec<i64>, Error> {
    let Some(session) = session::Entity::find_by_id(session_id).one(conn).await? else {
        return Err(Error::NotFound(format!(
            "session {session_id} does not exist"
        )));
    };
    let tiers = tier::Entity::find()
        .filter(tier::Column::SessionId.eq(session_id))
        .order_by_asc(tier::Column::Id)
        .all(conn)
        .await?;
    let mut stock = SessionStock {
        session_id,
        per_user_limit: i64::from(session.per_user_limit),
        tiers: tiers
            .iter()
            .map(|t| TierRules::from_models(t, &session).stock(None))
            .collect(),
    };
    for _ in 0..ATTEMPTS {
        match gate.load(&stock).await? {
            SessionLoad::Loaded(loaded) => return Ok(loaded),
            SessionLoad::Missing(missing) => {
                for tier in stock
                    .tiers
                    .iter_mut()
                    .filter(|t| missing.contains(&t.tier_id))
                {
                    tier.fences = Some(ledger::fences(conn, tier.tier_id).await?);
                }
            }
        }
    }
    Err(Error::Gate(GateError::Protocol(format!(
        "the tiers of session {session_id} kept vanishing from Redis while they were loaded"
    ))))
}

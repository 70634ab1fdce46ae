//! The saga log in Postgres: one row per saga (state, current step and attempt, the
//! compensations it still owes, its data, deadline, version), its step history (command sent,
//! reply, attempt, times), the operators' actions on it, and its durable timers. Every function
//! runs on the caller's connection or transaction.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement};

mod entity;
mod many;
mod write;

pub use action::Model as ActionRecord;
pub use entity::{action, saga, step};
pub use saga::Model as SagaRow;
pub use step::Model as Step;

pub use many::{
    Answer, NewTimer, Sent, StepKey, insert, lock as lock_many, lock_by_orders, record_replies,
    unanswered,
};
pub use write::{Moved, write};

/// What an operator did to a saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Retry,
    Compensate,
    Skip,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "RETRY",
            Self::Compensate => "COMPENSATE",
            Self::Skip => "SKIP",
        }
    }
}

/// A due timer, claimed by this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub id: i64,
    pub saga_id: String,
    pub kind: String,
    pub step: String,
    pub attempt: i32,
    pub due_at: chrono::DateTime<chrono::Utc>,
}

fn one_saga(
    conn: &impl ConnectionTrait,
    sql: &str,
    key: &str,
) -> impl Future<Output = Result<Option<SagaRow>, DbErr>> {
    saga::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [key.into()],
        ))
        .one(conn)
}

/// The saga, locked until the transaction ends.
pub async fn lock(conn: &impl ConnectionTrait, saga_id: &str) -> Result<Option<SagaRow>, DbErr> {
    one_saga(
        conn,
        "SELECT * FROM saga WHERE saga_id = $1 FOR UPDATE",
        saga_id,
    )
    .await
}

pub async fn find(
    conn: &impl ConnectionTrait,
    key: &str,
    by_order: bool,
) -> Result<Option<SagaRow>, DbErr> {
    let sql = if by_order {
        "SELECT * FROM saga WHERE order_no = $1"
    } else {
        "SELECT * FROM saga WHERE saga_id = $1"
    };
    one_saga(conn, sql, key).await
}

/// A page of sagas (in `state`, or all when it is empty) after `after`, by saga id.
pub async fn page(
    conn: &impl ConnectionTrait,
    state: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<SagaRow>, DbErr> {
    saga::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT * FROM saga WHERE ($1 = '' OR state = $1) AND saga_id > $2 \
             ORDER BY saga_id LIMIT $3",
            [state.into(), after.into(), limit.into()],
        ))
        .all(conn)
        .await
}

/// Records how a sent command travelled in the end.
pub async fn record_transport(
    conn: &impl ConnectionTrait,
    saga_id: &str,
    step: &str,
    attempt: i32,
    transport: &str,
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "UPDATE saga_step SET transport = $4 WHERE saga_id = $1 AND step = $2 AND attempt = $3",
        [
            saga_id.into(),
            step.into(),
            attempt.into(),
            transport.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn record_action(
    conn: &impl ConnectionTrait,
    saga_id: &str,
    action: Action,
    step: &str,
    reason: &str,
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO saga_action (saga_id, action, step, reason) VALUES ($1, $2, $3, $4)",
        [
            saga_id.into(),
            action.as_str().into(),
            step.into(),
            reason.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Claims up to `limit` due timers of sagas of type `saga_type` for `lease_ms` on behalf of
/// `replica`, in a statement of its own (`FOR UPDATE SKIP LOCKED`: another replica claims
/// others). A claimed timer is fired in a transaction of its own ([`mark_fired`]); one whose
/// replica died is claimed again once its lease ran out.
pub async fn claim_due_timers(
    conn: &impl ConnectionTrait,
    saga_type: &str,
    limit: u64,
    lease_ms: i64,
    replica: &str,
) -> Result<Vec<Timer>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE saga_timer SET claimed_by = $3, \
               claimed_until = now() + $2 * INTERVAL '1 millisecond' \
             WHERE id IN ( \
               SELECT t.id FROM saga_timer t JOIN saga s ON s.saga_id = t.saga_id \
               WHERE t.fired_at IS NULL AND t.due_at <= now() AND s.saga_type = $4 \
                 AND (t.claimed_until IS NULL OR t.claimed_until < now()) \
               ORDER BY t.due_at LIMIT $1 FOR UPDATE OF t SKIP LOCKED) \
             RETURNING id, saga_id, kind, step, attempt, due_at",
            [
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
                lease_ms.into(),
                replica.into(),
                saga_type.into(),
            ],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Timer {
                id: row.try_get("", "id")?,
                saga_id: row.try_get("", "saga_id")?,
                kind: row.try_get("", "kind")?,
                step: row.try_get("", "step")?,
                attempt: row.try_get("", "attempt")?,
                due_at: row.try_get("", "due_at")?,
            })
        })
        .collect()
}

/// Gives a claimed timer that could not fire back to the poll after `retry_ms`.
pub async fn release_timer(
    conn: &impl ConnectionTrait,
    timer_id: i64,
    retry_ms: i64,
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "UPDATE saga_timer SET claimed_until = now() + $2 * INTERVAL '1 millisecond' \
         WHERE id = $1 AND fired_at IS NULL",
        [timer_id.into(), retry_ms.into()],
    ))
    .await?;
    Ok(())
}

/// Parks a saga that cannot go on (its log holds what this version cannot act on), with the
/// reason, and marks the timer that found it fired: an operator decides.
pub async fn park_broken(
    conn: &impl ConnectionTrait,
    saga_id: &str,
    incident: &str,
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "UPDATE saga SET state = 'PARKED', incident = $2, version = version + 1, \
         updated_at = now() WHERE saga_id = $1 AND state NOT IN ('COMPLETED', 'COMPENSATED')",
        [saga_id.into(), incident.into()],
    ))
    .await?;
    Ok(())
}

/// Marks a timer fired by `replica`; `false` when it was fired already (by another replica
/// whose claim overlapped): the caller then does nothing.
pub async fn mark_fired(
    conn: &impl ConnectionTrait,
    timer_id: i64,
    replica: &str,
) -> Result<bool, DbErr> {
    let updated = conn
        .execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE saga_timer SET fired_at = now(), fired_by = $2 \
             WHERE id = $1 AND fired_at IS NULL",
            [timer_id.into(), replica.into()],
        ))
        .await?
        .rows_affected();
    Ok(updated == 1)
}

/// The step history of a saga, oldest first.
pub async fn history(conn: &impl ConnectionTrait, saga_id: &str) -> Result<Vec<Step>, DbErr> {
    step::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT * FROM saga_step WHERE saga_id = $1 ORDER BY id",
            [saga_id.into()],
        ))
        .all(conn)
        .await
}

/// The operators' actions on a saga, oldest first.
pub async fn actions(
    conn: &impl ConnectionTrait,
    saga_id: &str,
) -> Result<Vec<ActionRecord>, DbErr> {
    action::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT * FROM saga_action WHERE saga_id = $1 ORDER BY id",
            [saga_id.into()],
        ))
        .all(conn)
        .await
}

//! The saga log in Postgres: one row per saga (state, current step and attempt, what it still
//! has to compensate, deadline, version), its step history (command sent, reply, attempt,
//! times) and its durable timers. Every function runs in the caller's transaction.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement};

/// Saga states.
pub mod state {
    /// Going forward, waiting for the reply of the current step.
    pub const RUNNING: &str = "RUNNING";
    /// Reserved; waiting for payment, cancellation or the deadline.
    pub const AWAITING_PAYMENT: &str = "AWAITING_PAYMENT";
    pub const COMPENSATING: &str = "COMPENSATING";
    pub const COMPLETED: &str = "COMPLETED";
    pub const COMPENSATED: &str = "COMPENSATED";
    /// Stopped for an operator: a step after the pivot spent its retries, or a compensation
    /// was refused.
    pub const PARKED: &str = "PARKED";

    pub const ALL: &[&str] = &[
        RUNNING,
        AWAITING_PAYMENT,
        COMPENSATING,
        COMPLETED,
        COMPENSATED,
        PARKED,
    ];

    pub fn is_final(state: &str) -> bool {
        state == COMPLETED || state == COMPENSATED
    }
}

pub mod saga {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub saga_id: String,
        pub order_no: String,
        pub saga_type: String,
        pub state: String,
        pub step: String,
        pub attempt: i32,
        /// Attempts before this number do not count against the step's budget (an operator's
        /// retry gives a fresh one).
        pub attempt_base: i32,
        /// Compensation steps still to run, comma-separated, next first.
        pub compensations: String,
        pub user_id: String,
        pub tier_id: i64,
        pub quantity: i32,
        pub unit_price_cents: Option<i64>,
        pub paid: bool,
        pub cancel_reason: Option<String>,
        pub deadline: Option<DateTimeUtc>,
        pub incident: Option<String>,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod step {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga_step")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub saga_id: String,
        pub step: String,
        pub attempt: i32,
        pub command: String,
        pub transport: String,
        pub outcome: Option<String>,
        pub reason: Option<String>,
        pub detail: Option<String>,
        pub sent_at: DateTimeUtc,
        pub replied_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use saga::Model as Saga;
pub use step::Model as Step;

/// A timer that came due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub saga_id: String,
    pub kind: String,
    pub step: String,
    pub attempt: i32,
}

pub mod timer {
    pub const STEP_TIMEOUT: &str = "STEP_TIMEOUT";
    pub const RETRY: &str = "RETRY";
    pub const PAYMENT_DEADLINE: &str = "PAYMENT_DEADLINE";
}

fn one_saga(
    conn: &impl ConnectionTrait,
    sql: &str,
    key: &str,
) -> impl Future<Output = Result<Option<Saga>, DbErr>> {
    saga::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [key.into()],
        ))
        .one(conn)
}

/// A new saga in state RUNNING at `step`, unless the order has one already.
pub async fn insert(conn: &impl ConnectionTrait, new: &Saga) -> Result<Option<Saga>, DbErr> {
    saga::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "INSERT INTO saga (saga_id, order_no, saga_type, state, step, attempt, user_id, \
             tier_id, quantity) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8) \
             ON CONFLICT (order_no) DO NOTHING RETURNING *",
            [
                new.saga_id.clone().into(),
                new.order_no.clone().into(),
                new.saga_type.clone().into(),
                new.state.clone().into(),
                new.step.clone().into(),
                new.user_id.clone().into(),
                new.tier_id.into(),
                new.quantity.into(),
            ],
        ))
        .one(conn)
        .await
}

/// The saga, locked until the transaction ends.
pub async fn lock(conn: &impl ConnectionTrait, saga_id: &str) -> Result<Option<Saga>, DbErr> {
    one_saga(
        conn,
        "SELECT * FROM saga WHERE saga_id = $1 FOR UPDATE",
        saga_id,
    )
    .await
}

pub async fn lock_by_order(
    conn: &impl ConnectionTrait,
    order_no: &str,
) -> Result<Option<Saga>, DbErr> {
    one_saga(
        conn,
        "SELECT * FROM saga WHERE order_no = $1 FOR UPDATE",
        order_no,
    )
    .await
}

pub async fn find(
    conn: &impl ConnectionTrait,
    key: &str,
    by_order: bool,
) -> Result<Option<Saga>, DbErr> {
    let sql = if by_order {
        "SELECT * FROM saga WHERE order_no = $1"
    } else {
        "SELECT * FROM saga WHERE saga_id = $1"
    };
    one_saga(conn, sql, key).await
}

/// Writes the saga's mutable fields and bumps its version.
pub async fn save(conn: &impl ConnectionTrait, saga: &Saga) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "UPDATE saga SET state = $2, step = $3, attempt = $4, compensations = $5, \
         unit_price_cents = $6, paid = $7, cancel_reason = $8, deadline = $9, incident = $10, \
         attempt_base = $11, version = version + 1, updated_at = now() WHERE saga_id = $1",
        [
            saga.saga_id.clone().into(),
            saga.state.clone().into(),
            saga.step.clone().into(),
            saga.attempt.into(),
            saga.compensations.clone().into(),
            saga.unit_price_cents.into(),
            saga.paid.into(),
            saga.cancel_reason.clone().into(),
            saga.deadline.into(),
            saga.incident.clone().into(),
            saga.attempt_base.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn record_sent(
    conn: &impl ConnectionTrait,
    saga_id: &str,
    step: &str,
    attempt: i32,
    command: &str,
    transport: &str,
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO saga_step (saga_id, step, attempt, command, transport) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (saga_id, step, attempt) DO NOTHING",
        [
            saga_id.into(),
            step.into(),
            attempt.into(),
            command.into(),
            transport.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Records a reply; `false` when this (saga, step, attempt) was answered already (or never
/// sent): a duplicate that changes nothing.
pub async fn record_reply(
    conn: &impl ConnectionTrait,
    saga_id: &str,
    step: &str,
    attempt: i32,
    outcome: &str,
    reason: &str,
    detail: &str,
) -> Result<bool, DbErr> {
    let updated = conn
        .execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE saga_step SET outcome = $4, reason = $5, detail = $6, replied_at = now() \
             WHERE saga_id = $1 AND step = $2 AND attempt = $3 AND replied_at IS NULL",
            [
                saga_id.into(),
                step.into(),
                attempt.into(),
                outcome.into(),
                reason.into(),
                detail.into(),
            ],
        ))
        .await?
        .rows_affected();
    Ok(updated == 1)
}

pub async fn add_timer(
    conn: &impl ConnectionTrait,
    saga_id: &str,
    kind: &str,
    step: &str,
    attempt: i32,
    due_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO saga_timer (saga_id, kind, step, attempt, due_at) VALUES ($1, $2, $3, $4, $5)",
        [
            saga_id.into(),
            kind.into(),
            step.into(),
            attempt.into(),
            due_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Claims up to `limit` due timers (`FOR UPDATE SKIP LOCKED`: another replica claims others)
/// and marks them fired; the caller acts on them in the same transaction.
pub async fn claim_due_timers(
    conn: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<Timer>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE saga_timer SET fired_at = now() WHERE id IN ( \
               SELECT id FROM saga_timer WHERE fired_at IS NULL AND due_at <= now() \
               ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING saga_id, kind, step, attempt",
            [i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Timer {
                saga_id: row.try_get("", "saga_id")?,
                kind: row.try_get("", "kind")?,
                step: row.try_get("", "step")?,
                attempt: row.try_get("", "attempt")?,
            })
        })
        .collect()
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

//! The saga log's statements over many sagas at once: the engine moves every saga a batch of
//! events or replies touches in one transaction, reading with one statement per table and
//! writing with one ([`super::write`]), so a burst of a few hundred replies costs a few
//! statements rather than a few per reply.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement, Value};
use ticket_platform::recordset::{self, Rows};

use super::{SagaRow, saga};
use crate::saga::state::TimerKind;

/// A command recorded in a step's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub saga_id: String,
    pub step: String,
    pub attempt: i32,
    pub command: String,
    pub transport: String,
}

/// A reply recorded in a step's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub saga_id: String,
    pub step: String,
    pub attempt: i32,
    pub outcome: String,
    pub reason: String,
    pub detail: String,
}

/// A durable timer to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTimer {
    pub saga_id: String,
    pub kind: String,
    pub step: String,
    pub attempt: i32,
    pub due_at: DateTime<Utc>,
}

/// A step's attempt: (saga, step, attempt).
pub type StepKey = (String, String, i32);

/// `($1::a, $2::b), ($3::a, $4::b)` for `rows` rows of columns of `types`.
fn placeholders(rows: usize, types: &[&str]) -> String {
    placeholders_after(0, rows, types)
}

/// [`placeholders`], numbered after the `before` values a statement has already.
pub(super) fn placeholders_after(before: usize, rows: usize, types: &[&str]) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(col, ty)| format!("${}::{ty}", before + row * types.len() + col + 1))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn statement(conn: &impl ConnectionTrait, sql: String, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

/// New sagas, but for orders that have one already (and but for a second saga of an order
/// named twice in `new`): the rows inserted.
pub async fn insert(conn: &impl ConnectionTrait, new: &[SagaRow]) -> Result<Vec<SagaRow>, DbErr> {
    let mut seen = HashSet::new();
    let mut new: Vec<&SagaRow> = new.iter().filter(|n| seen.insert(&n.order_no)).collect();
    // In the order of their order numbers: an insert waits on another transaction's insert of
    // the same order, so two batches naming the same orders must take them in the same order.
    new.sort_by(|a, b| a.order_no.cmp(&b.order_no));
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Rows::with_capacity(new.len());
    for n in &new {
        rows.push([
            ("saga_id", n.saga_id.clone().into()),
            ("order_no", n.order_no.clone().into()),
            ("saga_type", n.saga_type.clone().into()),
            ("state", n.state.clone().into()),
            ("step", n.step.clone().into()),
            ("attempt", n.attempt.into()),
            ("data", n.data.clone()),
            ("traceparent", n.traceparent.clone().into()),
        ]);
    }
    let sql = format!(
        "INSERT INTO saga (saga_id, order_no, saga_type, state, step, attempt, data, traceparent) \
         SELECT saga_id, order_no, saga_type, state, step, attempt, \
                COALESCE(data, 'null'::jsonb), traceparent FROM {} \
         ON CONFLICT (order_no) DO NOTHING RETURNING *",
        recordset::from(
            1,
            "v",
            &[
                ("saga_id", "text"),
                ("order_no", "text"),
                ("saga_type", "text"),
                ("state", "text"),
                ("step", "text"),
                ("attempt", "int4"),
                ("data", "jsonb"),
                ("traceparent", "text"),
            ]
        )
    );
    let values = vec![rows.into_value()];
    saga::Entity::find()
        .from_raw_sql(statement(conn, sql, values))
        .all(conn)
        .await
}

/// The sagas of `saga_ids` that exist, locked until the transaction ends. They are locked in
/// the order of their ids, so two transactions locking overlapping sets do not deadlock.
pub async fn lock(conn: &impl ConnectionTrait, saga_ids: &[&str]) -> Result<Vec<SagaRow>, DbErr> {
    lock_where(conn, "saga_id", saga_ids).await
}

/// The sagas of the orders `order_numbers` that exist, locked like [`lock`]'s (in the order
/// of their saga ids, whichever column found them).
pub async fn lock_by_orders(
    conn: &impl ConnectionTrait,
    order_numbers: &[&str],
) -> Result<Vec<SagaRow>, DbErr> {
    lock_where(conn, "order_no", order_numbers).await
}

async fn lock_where(
    conn: &impl ConnectionTrait,
    column: &str,
    keys: &[&str],
) -> Result<Vec<SagaRow>, DbErr> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT * FROM saga WHERE {column} IN ({}) ORDER BY saga_id FOR UPDATE",
        list.join(", ")
    );
    let values = keys.iter().map(|key| (*key).into()).collect();
    saga::Entity::find()
        .from_raw_sql(statement(conn, sql, values))
        .all(conn)
        .await
}

/// Which of `keys` were sent and are not answered yet.
pub async fn unanswered(
    conn: &impl ConnectionTrait,
    keys: &[StepKey],
) -> Result<HashSet<StepKey>, DbErr> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let values = keys
        .iter()
        .flat_map(|(saga_id, step, attempt)| {
            [
                saga_id.clone().into(),
                step.clone().into(),
                (*attempt).into(),
            ]
        })
        .collect();
    let sql = format!(
        "SELECT saga_id, step, attempt FROM saga_step \
         WHERE replied_at IS NULL AND (saga_id, step, attempt) IN (VALUES {})",
        placeholders(keys.len(), &["text", "text", "int4"])
    );
    let rows = conn.query_all_raw(statement(conn, sql, values)).await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("", "saga_id")?,
                row.try_get("", "step")?,
                row.try_get("", "attempt")?,
            ))
        })
        .collect()
}

/// Records replies in their steps' history (each step's first reply only), and marks fired,
/// on behalf of `replica`, the timeout of each attempt answered: a step timeout acts only on
/// an attempt still waiting for its reply, so once answered it would fire as a no-op. Returns
/// each recorded reply's step, outcome and the seconds from its command to it.
pub async fn record_replies(
    conn: &impl ConnectionTrait,
    answers: &[Answer],
    replica: &str,
) -> Result<Vec<(String, String, f64)>, DbErr> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = answers
        .iter()
        .flat_map(|a| {
            [
                a.saga_id.clone().into(),
                a.step.clone().into(),
                a.attempt.into(),
                a.outcome.clone().into(),
                a.reason.clone().into(),
                a.detail.clone().into(),
            ]
        })
        .collect();
    values.push(replica.into());
    let sql = format!(
        "WITH answered AS ( \
           UPDATE saga_step s SET outcome = v.outcome, reason = v.reason, detail = v.detail, \
             replied_at = now() \
           FROM (VALUES {}) AS v (saga_id, step, attempt, outcome, reason, detail) \
           WHERE s.saga_id = v.saga_id AND s.step = v.step AND s.attempt = v.attempt \
             AND s.replied_at IS NULL \
           RETURNING s.saga_id, s.step, s.attempt, s.outcome, \
             EXTRACT(EPOCH FROM s.replied_at - s.sent_at)::float8 AS took), \
         fired AS ( \
           UPDATE saga_timer t SET fired_at = now(), fired_by = ${} FROM answered a \
           WHERE t.saga_id = a.saga_id AND t.step = a.step AND t.attempt = a.attempt \
             AND t.kind = '{}' AND t.fired_at IS NULL) \
         SELECT step, outcome, took FROM answered",
        placeholders(
            answers.len(),
            &["text", "text", "int4", "text", "text", "text"]
        ),
        values.len(),
        TimerKind::StepTimeout.as_str(),
    );
    let rows = conn.query_all_raw(statement(conn, sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("", "step")?,
                row.try_get("", "outcome")?,
                row.try_get::<f64>("", "took")?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_cell_row_by_row() {
        assert_eq!(
            placeholders(2, &["text", "int4"]),
            "($1::text, $2::int4), ($3::text, $4::int4)"
        );
        assert_eq!(placeholders(0, &["text"]), "");
        assert_eq!(placeholders_after(3, 1, &["int4"]), "($4::int4)");
    }
}

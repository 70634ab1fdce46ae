//! What one engine transaction moved, written with one statement (one round trip): the
//! commands recorded in their steps' history, the new timers, the sagas' rows, and the
//! commands in the outbox, each a data-modifying CTE.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbErr, Statement, Value};
use ticket_platform::messaging::OutgoingMessage;
use ticket_platform::outbox;

use super::SagaRow;
use super::many::{NewTimer, Sent, placeholders_after};
use crate::saga::state::State;

/// What an engine transaction gathered.
pub struct Moved<'a> {
    pub sent: &'a [Sent],
    pub timers: &'a [NewTimer],
    pub sagas: &'a [SagaRow],
    pub messages: &'a [OutgoingMessage],
}

/// Writes `moved` on behalf of `replica`:
/// - each command in its step's history (one recorded already is left as it is);
/// - the new timers, but for those of sagas that end here (they could do nothing);
/// - each saga's mutable fields, its version bumped (each saga once: the last of its rows
///   wins); the timers of a saga that ended (COMPLETED or COMPENSATED, which nothing leaves)
///   are marked fired by `replica`, so a payment deadline does not fire as a no-op long after
///   its saga was paid and finished;
/// - the commands in the outbox.
pub async fn write(
    conn: &impl ConnectionTrait,
    moved: &Moved<'_>,
    replica: &str,
) -> Result<(), DbErr> {
    let mut values: Vec<Value> = Vec::new();
    let last = last_rows(moved.sagas);
    let ended: HashSet<&str> = last
        .iter()
        .filter(|s| State::parse(&s.state).is_some_and(State::is_final))
        .map(|s| s.saga_id.as_str())
        .collect();
    let timers: Vec<&NewTimer> = moved
        .timers
        .iter()
        .filter(|t| !ended.contains(t.saga_id.as_str()))
        .collect();
    let mut ctes = Vec::new();
    if let Some(sql) = sent(moved.sent, &mut values) {
        ctes.push(format!("sent AS ({sql})"));
    }
    if let Some(sql) = new_timers(&timers, &mut values) {
        ctes.push(format!("timers AS ({sql})"));
    }
    if !last.is_empty() {
        ctes.extend(saved(&last, replica, &mut values));
    }
    if let Some(sql) = outbox::insert_values(moved.messages, &mut values)? {
        ctes.push(format!("messages AS ({sql})"));
    }
    if ctes.is_empty() {
        return Ok(());
    }
    let sql = format!("WITH {} SELECT 1", ctes.join(", "));
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// Each saga's last row in `sagas`, in the order of their ids (as they were locked).
fn last_rows(sagas: &[SagaRow]) -> Vec<&SagaRow> {
    let mut last: HashMap<&str, &SagaRow> = HashMap::new();
    for saga in sagas {
        last.insert(saga.saga_id.as_str(), saga);
    }
    let mut last: Vec<&SagaRow> = last.into_values().collect();
    last.sort_by(|a, b| a.saga_id.cmp(&b.saga_id));
    last
}

fn sent(sent: &[Sent], values: &mut Vec<Value>) -> Option<String> {
    if sent.is_empty() {
        return None;
    }
    let rows = placeholders_after(
        values.len(),
        sent.len(),
        &["text", "text", "int4", "text", "text"],
    );
    values.extend(sent.iter().flat_map(|s| {
        [
            s.saga_id.clone().into(),
            s.step.clone().into(),
            s.attempt.into(),
            s.command.clone().into(),
            s.transport.clone().into(),
        ]
    }));
    Some(format!(
        "INSERT INTO saga_step (saga_id, step, attempt, command, transport) VALUES {rows} \
         ON CONFLICT (saga_id, step, attempt) DO NOTHING"
    ))
}

fn new_timers(timers: &[&NewTimer], values: &mut Vec<Value>) -> Option<String> {
    if timers.is_empty() {
        return None;
    }
    let rows = placeholders_after(
        values.len(),
        timers.len(),
        &["text", "text", "text", "int4", "timestamptz"],
    );
    values.extend(timers.iter().flat_map(|t| {
        [
            t.saga_id.clone().into(),
            t.kind.clone().into(),
            t.step.clone().into(),
            t.attempt.into(),
            t.due_at.into(),
        ]
    }));
    Some(format!(
        "INSERT INTO saga_timer (saga_id, kind, step, attempt, due_at) VALUES {rows}"
    ))
}

/// The `saved` CTE (the sagas' rows) and the `ended` one (their timers, when they ended).
fn saved(last: &[&SagaRow], replica: &str, values: &mut Vec<Value>) -> [String; 2] {
    let types = [
        "text",
        "text",
        "text",
        "int4",
        "int4",
        "jsonb",
        "bool",
        "bool",
        "timestamptz",
        "text",
        "jsonb",
    ];
    let rows = placeholders_after(values.len(), last.len(), &types);
    values.extend(last.iter().flat_map(|s| {
        [
            s.saga_id.clone().into(),
            s.state.clone().into(),
            s.step.clone().into(),
            s.attempt.into(),
            s.attempt_base.into(),
            s.compensations.clone().into(),
            s.passed_pivot.into(),
            s.abort_requested.into(),
            s.deadline.into(),
            s.incident.clone().into(),
            s.data.clone().into(),
        ]
    }));
    values.push(replica.into());
    let replica = values.len();
    let ended = State::ALL
        .iter()
        .filter(|state| state.is_final())
        .map(|state| format!("'{}'", state.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    [
        format!(
            "saved AS (UPDATE saga s SET state = v.state, step = v.step, attempt = v.attempt, \
             attempt_base = v.attempt_base, compensations = v.compensations, \
             passed_pivot = v.passed_pivot, abort_requested = v.abort_requested, \
             deadline = v.deadline, incident = v.incident, data = v.data, \
             version = s.version + 1, updated_at = now() \
             FROM (VALUES {rows}) AS v (saga_id, state, step, attempt, attempt_base, \
             compensations, passed_pivot, abort_requested, deadline, incident, data) \
             WHERE s.saga_id = v.saga_id \
             RETURNING s.saga_id, s.state)"
        ),
        format!(
            "ended AS (UPDATE saga_timer t SET fired_at = now(), fired_by = ${replica} \
             FROM saved WHERE t.saga_id = saved.saga_id AND saved.state IN ({ended}) \
             AND t.fired_at IS NULL)"
        ),
    ]
}

//! What one engine transaction moved, written with one statement (one round trip): the
//! commands recorded in their steps' history, the new timers, the sagas' rows, and the
//! commands in the outbox, each a data-modifying CTE.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbErr, Statement, Value};
use ticket_platform::messaging::OutgoingMessage;
use ticket_platform::outbox;
use ticket_platform::recordset::{self, Rows};

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
    if let Some((sql, values)) = statement(moved, replica)? {
        conn.execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// [`write`]'s statement and its values (none when nothing moved). The commands, timers and
/// messages are one parameter each ([`recordset`]), so the statement's text depends only on
/// the number of sagas and on which of the four kinds it writes.
fn statement(moved: &Moved<'_>, replica: &str) -> Result<Option<(String, Vec<Value>)>, DbErr> {
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
        return Ok(None);
    }
    Ok(Some((format!("WITH {} SELECT 1", ctes.join(", ")), values)))
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
    let mut rows = Rows::with_capacity(sent.len());
    for s in sent {
        rows.push([
            ("saga_id", s.saga_id.clone().into()),
            ("step", s.step.clone().into()),
            ("attempt", s.attempt.into()),
            ("command", s.command.clone().into()),
            ("transport", s.transport.clone().into()),
        ]);
    }
    values.push(rows.into_value());
    let rows = recordset::from(
        values.len(),
        "v",
        &[
            ("saga_id", "text"),
            ("step", "text"),
            ("attempt", "int4"),
            ("command", "text"),
            ("transport", "text"),
        ],
    );
    Some(format!(
        "INSERT INTO saga_step (saga_id, step, attempt, command, transport) \
         SELECT saga_id, step, attempt, command, transport FROM {rows} \
         ON CONFLICT (saga_id, step, attempt) DO NOTHING"
    ))
}

fn new_timers(timers: &[&NewTimer], values: &mut Vec<Value>) -> Option<String> {
    if timers.is_empty() {
        return None;
    }
    let mut rows = Rows::with_capacity(timers.len());
    for t in timers {
        rows.push([
            ("saga_id", t.saga_id.clone().into()),
            ("kind", t.kind.clone().into()),
            ("step", t.step.clone().into()),
            ("attempt", t.attempt.into()),
            ("due_at", recordset::timestamp(t.due_at)),
        ]);
    }
    values.push(rows.into_value());
    let rows = recordset::from(
        values.len(),
        "v",
        &[
            ("saga_id", "text"),
            ("kind", "text"),
            ("step", "text"),
            ("attempt", "int4"),
            ("due_at", "timestamptz"),
        ],
    );
    Some(format!(
        "INSERT INTO saga_timer (saga_id, kind, step, attempt, due_at) \
         SELECT saga_id, kind, step, attempt, due_at FROM {rows}"
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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ticket_platform::messaging::OutgoingMessage;

    use super::*;

    fn saga(id: &str) -> SagaRow {
        SagaRow {
            saga_id: id.into(),
            order_no: format!("ORD-{id}"),
            saga_type: "PURCHASE".into(),
            state: "RUNNING".into(),
            step: "STOCK_DEDUCT".into(),
            attempt: 1,
            attempt_base: 0,
            compensations: serde_json::json!([]),
            passed_pivot: false,
            abort_requested: false,
            deadline: None,
            incident: None,
            data: serde_json::json!({}),
            version: 1,
            traceparent: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn sent(saga_id: &str, step: &str) -> Sent {
        Sent {
            saga_id: saga_id.into(),
            step: step.into(),
            attempt: 1,
            command: "{}".into(),
            transport: "MQ".into(),
        }
    }

    fn timer(saga_id: &str) -> NewTimer {
        NewTimer {
            saga_id: saga_id.into(),
            kind: "STEP_TIMEOUT".into(),
            step: "STOCK_DEDUCT".into(),
            attempt: 1,
            due_at: Utc::now(),
        }
    }

    fn message(key: &str) -> OutgoingMessage {
        let mut message = OutgoingMessage::new("STOCK_TOPIC", "STOCK_DEDUCT", key, &1u32);
        message.saga_id = Some("S-1".into());
        message
    }

    #[test]
    fn the_statement_is_the_same_for_any_number_of_commands_timers_and_messages() {
        let sagas = [saga("S-1"), saga("S-2")];
        let few = (
            [sent("S-1", "STOCK_DEDUCT")],
            [timer("S-1")],
            [message("ORD-1")],
        );
        let many = (
            [
                sent("S-1", "STOCK_DEDUCT"),
                sent("S-2", "STOCK_DEDUCT"),
                sent("S-2", "ORDER_RESERVE"),
            ],
            [timer("S-1"), timer("S-2")],
            [message("ORD-1"), message("ORD-2"), message("ORD-2")],
        );
        let (a, a_values) = statement(
            &Moved {
                sent: &few.0,
                timers: &few.1,
                sagas: &sagas,
                messages: &few.2,
            },
            "replica",
        )
        .expect("valid")
        .expect("a statement");
        let (b, b_values) = statement(
            &Moved {
                sent: &many.0,
                timers: &many.1,
                sagas: &sagas,
                messages: &many.2,
            },
            "replica",
        )
        .expect("valid")
        .expect("a statement");
        assert_eq!(a, b);
        assert_eq!(a_values.len(), b_values.len());
    }

    #[test]
    fn nothing_moved_is_no_statement() {
        let moved = Moved {
            sent: &[],
            timers: &[],
            sagas: &[],
            messages: &[],
        };
        assert!(statement(&moved, "replica").expect("valid").is_none());
    }
}

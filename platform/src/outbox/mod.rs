//! The transactional outbox. A service writes its messages with [`enqueue`] in the same
//! transaction as the state change they announce; the [`Relay`] publishes unsent rows in
//! batches and marks them sent. Delivery is at-least-once: a relay that stops after publishing
//! and before marking publishes the rows again with the same `message_id`, which inboxes skip.
//! Several relays may run against one table: rows are claimed with `FOR UPDATE SKIP LOCKED`.
//! A relay is woken by the commit of rows in its own process ([`committed`]); its poll is the
//! floor beneath that.

mod relay;
mod wake;

pub use relay::{Relay, RelayError, RelaySettings, any_unsent, relay_once};
pub use wake::committed;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement, Value};
use tokio_util::sync::CancellationToken;

use crate::messaging::OutgoingMessage;
use crate::recordset::{self, Rows};

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub message_id: Uuid,
        pub topic: String,
        pub tag: String,
        pub message_key: String,
        pub saga_id: Option<String>,
        pub step: Option<String>,
        pub attempt: i32,
        pub traceparent: Option<String>,
        pub payload: Vec<u8>,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        /// Why the row can never be published; such rows are skipped.
        pub failure: Option<String>,
        /// When an overdue row was delivered another way ([`crate::handover`]).
        pub handed_over_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Writes messages to the outbox inside the caller's transaction (or connection). A message
/// the broker would refuse fails the call, so the caller's transaction does not commit it.
pub async fn enqueue(db: &impl ConnectionTrait, messages: &[OutgoingMessage]) -> Result<(), DbErr> {
    let mut values = Vec::new();
    if let Some(sql) = insert_values(messages, &mut values)? {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// The columns an outbox row is written with, and their types.
const RECORD: [(&str, &str); 10] = [
    ("message_id", "uuid"),
    ("topic", "text"),
    ("tag", "text"),
    ("message_key", "text"),
    ("saga_id", "text"),
    ("step", "text"),
    ("attempt", "int4"),
    ("traceparent", "text"),
    ("payload", "bytea"),
    ("created_at", "timestamptz"),
];

/// `INSERT INTO outbox ... SELECT ... FROM {source}, jsonb_to_recordset(...)`: `message` as a
/// data-modifying CTE of a caller's statement, written only when `source` (one of that
/// statement's CTEs, returning at most one row) has a row, so a change and its event are one
/// statement and one round trip. The message is one parameter appended to `values`. A message
/// the broker would refuse fails here, before anything is sent.
pub fn insert_from(
    source: &str,
    message: &OutgoingMessage,
    values: &mut Vec<Value>,
) -> Result<String, DbErr> {
    let mut rows = Rows::with_capacity(1);
    rows.push(record(message, recordset::timestamp(chrono::Utc::now()))?);
    values.push(rows.into_value());
    Ok(format!(
        "{} FROM {source}, {}",
        insert(),
        relation(values.len())
    ))
}

/// `INSERT INTO outbox ... SELECT ... FROM jsonb_to_recordset(...)` of `messages` (none:
/// `None`), for a data-modifying CTE of a caller's statement: the messages are one parameter
/// appended to `values` ([`crate::recordset`]), so the statement's text is the same for any
/// number of messages. A message the broker would refuse fails here, before anything is sent.
pub fn insert_values(
    messages: &[OutgoingMessage],
    values: &mut Vec<Value>,
) -> Result<Option<String>, DbErr> {
    if messages.is_empty() {
        return Ok(None);
    }
    let now = recordset::timestamp(chrono::Utc::now());
    let mut rows = Rows::with_capacity(messages.len());
    for message in messages {
        rows.push(record(message, now.clone())?);
    }
    values.push(rows.into_value());
    Ok(Some(format!(
        "{} FROM {}",
        insert(),
        relation(values.len())
    )))
}

/// `message`'s row of [`RECORD`], written at `now`; a message the broker would refuse fails.
fn record(
    message: &OutgoingMessage,
    now: serde_json::Value,
) -> Result<[(&'static str, serde_json::Value); 10], DbErr> {
    message
        .validate()
        .map_err(|err| DbErr::Custom(err.to_string()))?;
    Ok([
        ("message_id", message.message_id.to_string().into()),
        ("topic", message.topic.clone().into()),
        ("tag", message.tag.clone().into()),
        ("message_key", message.key.clone().into()),
        ("saga_id", message.saga_id.clone().into()),
        ("step", message.step.clone().into()),
        (
            "attempt",
            i32::try_from(message.attempt).unwrap_or(i32::MAX).into(),
        ),
        ("traceparent", message.traceparent.clone().into()),
        ("payload", recordset::bytea(&message.payload)),
        ("created_at", now),
    ])
}

/// `INSERT INTO outbox (columns) SELECT m.columns`, for a relation `m` of [`RECORD`].
fn insert() -> String {
    let columns: Vec<&str> = RECORD.iter().map(|(column, _)| *column).collect();
    let selected: Vec<String> = columns.iter().map(|column| format!("m.{column}")).collect();
    format!(
        "INSERT INTO outbox ({}) SELECT {}",
        columns.join(", "),
        selected.join(", ")
    )
}

/// The messages of parameter `param` as the relation `m`.
fn relation(param: usize) -> String {
    recordset::from(param, "m", &RECORD)
}

/// Rows not yet published.
pub async fn pending(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND failure IS NULL",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// Measures the backlog every `interval` until `stop`: rows not yet published and the age of
/// the oldest (`outbox_backlog_rows`, `outbox_oldest_age_seconds`), on the unsent rows' index.
pub async fn measure(
    db: DatabaseConnection,
    metrics: crate::metrics::OutboxMetrics,
    interval: Duration,
    stop: CancellationToken,
) {
    crate::metrics::every(interval, stop, || async {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS rows, \
                   COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age \
                 FROM outbox WHERE sent_at IS NULL AND failure IS NULL",
            ))
            .await;
        match row {
            Ok(Some(row)) => {
                if let (Ok(rows), Ok(age)) = (
                    row.try_get::<i64>("", "rows"),
                    row.try_get::<f64>("", "age"),
                ) {
                    metrics.backlog.set(rows);
                    metrics.oldest_age.set(age.max(0.0));
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(error = %err, "the outbox backlog could not be measured");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, saga_id: Option<&str>) -> OutgoingMessage {
        OutgoingMessage {
            topic: "ORDER_TOPIC".into(),
            tag: "ORDER_CREATED".into(),
            key: key.into(),
            message_id: uuid::Uuid::now_v7(),
            saga_id: saga_id.map(str::to_owned),
            step: None,
            attempt: 1,
            traceparent: None,
            payload: vec![8, 1],
        }
    }

    #[test]
    fn a_batch_of_messages_is_one_statement_whatever_its_size() {
        let mut one = vec![Value::from("before")];
        let mut three = vec![Value::from("before")];
        let a = insert_values(&[message("ORD-1", None)], &mut one).expect("valid");
        let b = insert_values(
            &[
                message("ORD-1", Some("S-1")),
                message("ORD-2", None),
                message("ORD-3", None),
            ],
            &mut three,
        )
        .expect("valid");
        assert!(a.is_some());
        assert_eq!(a, b);
        // One parameter for the batch, numbered after the statement's values before it.
        assert_eq!((one.len(), three.len()), (2, 2));
        assert!(
            a.unwrap_or_default()
                .contains("jsonb_to_recordset($2::jsonb)")
        );
        assert_eq!(insert_values(&[], &mut one).expect("nothing"), None);
    }

    #[test]
    fn a_message_the_broker_would_refuse_is_refused_before_the_statement() {
        let mut empty = message("ORD-1", None);
        empty.payload.clear();
        let mut values = vec![Value::from("before")];
        assert!(insert_values(&[message("ORD-2", None), empty], &mut values).is_err());
        assert_eq!(values, [Value::from("before")], "nothing appended");
    }
}

//! Dead letters, kept in one place. A message a handler rejects (it can never succeed) is
//! published, through the rejecting service's own outbox, to `DEAD_LETTER_TOPIC` with the
//! reason ([`reject`]), so nothing is lost and no other service reads this service's tables.
//! The orchestrator records each such notice, and each message of every consumer group's
//! `%DLQ%<group>` (redeliveries exhausted), once per (group, message): first and last seen,
//! how many times, the reason where known ([`record`]). Operators list and redrive them there.

use std::collections::HashMap;

use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use ticket_proto::saga::v1::RejectedMessage;

use crate::messaging::{IncomingMessage, OutgoingMessage, tag, topic};
use crate::outbox;

/// How a message reached the dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A handler rejected it, with a reason.
    Rejected,
    /// Its group's redeliveries were exhausted (the broker's `%DLQ%<group>`).
    Dlq,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "REJECTED",
            Self::Dlq => "DLQ",
        }
    }
}

/// One sighting of a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub consumer_group: String,
    pub message_id: String,
    pub topic: String,
    pub tag: String,
    pub key: String,
    pub reason: String,
    pub source: Source,
    pub properties: HashMap<String, String>,
    pub payload: Vec<u8>,
}

/// The properties of a message worth keeping with it.
pub fn properties(message: &IncomingMessage) -> HashMap<String, String> {
    let mut properties = HashMap::new();
    let mut keep = |name: &str, value: Option<&String>| {
        if let Some(value) = value {
            properties.insert(name.to_owned(), value.clone());
        }
    };
    keep("saga_id", message.saga_id.as_ref());
    keep("step", message.step.as_ref());
    keep("traceparent", message.traceparent.as_ref());
    if message.attempt > 0 {
        properties.insert("attempt".into(), message.attempt.to_string());
    }
    properties
}

/// Publishes a rejected message with its reason to `DEAD_LETTER_TOPIC`, through `db`'s outbox.
pub async fn reject(
    db: &DatabaseConnection,
    consumer_group: &str,
    message: &IncomingMessage,
    reason: &str,
) -> Result<(), DbErr> {
    let notice = RejectedMessage {
        topic: message.topic.clone(),
        tag: message.tag.clone(),
        key: message.key.clone(),
        message_id: message.message_id.clone(),
        consumer_group: consumer_group.to_owned(),
        reason: reason.to_owned(),
        body: message.body.to_vec(),
        properties: properties(message),
    };
    let key = if message.key.is_empty() {
        &message.message_id
    } else {
        &message.key
    };
    let out = OutgoingMessage::new(topic::DEAD_LETTER, tag::REJECTED, key, &notice);
    outbox::enqueue(db, &[out]).await
}

/// Records a sighting: a new record, or the same one seen once more (a redriven message that
/// failed again is no longer redriven).
pub async fn record(conn: &impl ConnectionTrait, entry: &Entry) -> Result<(), DbErr> {
    let properties = serde_json::to_value(&entry.properties)
        .map_err(|err| DbErr::Custom(format!("dead letter properties: {err}")))?;
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO dead_letter (consumer_group, message_id, topic, tag, message_key, reason, \
           payload, source, properties, received_at, last_seen_at, times_seen) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now(), 1) \
         ON CONFLICT (consumer_group, message_id) DO UPDATE SET \
           times_seen = dead_letter.times_seen + 1, last_seen_at = now(), \
           reason = EXCLUDED.reason, source = EXCLUDED.source, \
           properties = EXCLUDED.properties, redriven_at = NULL",
        [
            entry.consumer_group.clone().into(),
            entry.message_id.clone().into(),
            entry.topic.clone().into(),
            entry.tag.clone().into(),
            entry.key.clone().into(),
            entry.reason.clone().into(),
            entry.payload.clone().into(),
            entry.source.as_str().into(),
            properties.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The reasons a service gave for rejecting `message_id`, from the notices in its outbox
/// (for tests and operators of that service).
pub async fn reasons(db: &DatabaseConnection, message_id: &str) -> Result<Vec<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id DESC",
            [topic::DEAD_LETTER.into()],
        ))
        .await?;
    let mut reasons = Vec::new();
    for row in rows {
        let payload: Vec<u8> = row.try_get("", "payload")?;
        if let Ok(notice) = RejectedMessage::decode(payload.as_slice())
            && notice.message_id == message_id
        {
            reasons.push(notice.reason);
        }
    }
    Ok(reasons)
}

//! The system's dead letters in one place: the orchestrator consumes `DEAD_LETTER_TOPIC`
//! (messages any service's handler rejected, with the reason, published through that service's
//! outbox) and `%DLQ%<group>` of every consumer group of the system (redeliveries exhausted),
//! and records each once per (group, message) with how often it was seen. `SagaAdmin` lists and
//! redrives them.

use ticket_platform::dead_letter::{self, Entry, Source};
use ticket_platform::inbox;
use ticket_platform::messaging::{DLQ_PREFIX, HandleError, IncomingMessage, MessageHandler, topic};
use ticket_proto::saga::v1::RejectedMessage;

/// The orchestrator's consumer group of the dead letters.
pub const GROUP: &str = "orchestrator-dead-letters";

/// The consumer groups of the system whose `%DLQ%` is read by default.
pub const SYSTEM_GROUPS: &[&str] = &[
    crate::events::EVENTS_GROUP,
    crate::events::REPLIES_GROUP,
    "stock-svc",
    "order-svc",
    "notify-svc",
];

pub struct DeadLetters {
    pub db: sea_orm::DatabaseConnection,
}

fn retry(err: sea_orm::DbErr) -> HandleError {
    HandleError::Retry(err.to_string())
}

impl DeadLetters {
    /// What a delivery says about the dead letter it carries, and the key it is handled once
    /// under: a notice by its own `message_id` (stable across re-publishes), a `%DLQ%` message
    /// by the broker's id of its landing there (a redriven message that fails again lands
    /// again, and counts again).
    fn entry(message: &IncomingMessage) -> Result<(Entry, String), HandleError> {
        if message.delivered_from == topic::DEAD_LETTER {
            let notice: RejectedMessage = message.decode()?;
            if notice.consumer_group.is_empty() || notice.message_id.is_empty() {
                return Err(HandleError::Reject(format!(
                    "a dead-letter notice names no {}: it cannot be recorded or redriven",
                    if notice.consumer_group.is_empty() {
                        "consumer group"
                    } else {
                        "message id"
                    }
                )));
            }
            let entry = Entry {
                consumer_group: notice.consumer_group,
                message_id: notice.message_id,
                topic: notice.topic,
                tag: notice.tag,
                key: notice.key,
                reason: notice.reason,
                source: Source::Rejected,
                properties: notice.properties,
                payload: notice.body,
            };
            return Ok((entry, message.message_id.clone()));
        }
        let Some(group) = message
            .delivered_from
            .strip_prefix(DLQ_PREFIX)
            .filter(|group| !group.is_empty())
        else {
            return Err(HandleError::Reject(format!(
                "{} is not a dead-letter topic",
                message.delivered_from
            )));
        };
        let entry = Entry {
            consumer_group: group.to_owned(),
            message_id: message.message_id.clone(),
            topic: message.topic.clone(),
            tag: message.tag.clone(),
            key: message.key.clone(),
            reason: format!(
                "group {group} could not handle it in {} deliveries",
                message.reconsume_times.saturating_add(1)
            ),
            source: Source::Dlq,
            properties: dead_letter::properties(message),
            payload: message.body.to_vec(),
        };
        Ok((entry, message.broker_message_id.clone()))
    }
}

impl MessageHandler for DeadLetters {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let (entry, once) = Self::entry(&message)?;
        let Some(txn) = inbox::begin(&self.db, GROUP, &once).await.map_err(retry)? else {
            return Ok(());
        };
        dead_letter::record(&txn, &entry).await.map_err(retry)?;
        txn.commit().await.map_err(retry)?;
        tracing::warn!(group = %entry.consumer_group, topic = %entry.topic, message_id = %entry.message_id, reason = %entry.reason, "dead letter recorded");
        Ok(())
    }
}

#[cfg(test)]
mod prop_tests;

//! What travels with every message: the payload plus the properties of the message contract
//! (`message_id`, `saga_id`, `step`, `attempt`, `traceparent`); the key is the order number.

use bytes::Bytes;
use uuid::Uuid;

use super::MessagingError;
use super::consumer::HandleError;

/// The largest payload the publisher sends (the broker's default limit is 4 MiB per message).
pub const MAX_PAYLOAD: usize = 4 * 1024 * 1024 - 64 * 1024;

/// Property names of the message contract.
pub mod property {
    pub const MESSAGE_ID: &str = "message_id";
    pub const SAGA_ID: &str = "saga_id";
    pub const STEP: &str = "step";
    pub const ATTEMPT: &str = "attempt";
    pub const TRACEPARENT: &str = "traceparent";
}

/// A message to publish. `message_id` is assigned once (when the outbox row is written) and
/// survives every re-publish and redrive: inboxes deduplicate on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Logical topic name (without the namespace prefix).
    pub topic: String,
    pub tag: String,
    /// The order number: findable with the broker's key index, and the queue selector's key.
    pub key: String,
    pub message_id: Uuid,
    pub saga_id: Option<String>,
    pub step: Option<String>,
    pub attempt: u32,
    pub traceparent: Option<String>,
    pub payload: Vec<u8>,
}

impl OutgoingMessage {
    pub fn new(topic: &str, tag: &str, key: &str, payload: &impl prost::Message) -> Self {
        Self {
            topic: topic.to_owned(),
            tag: tag.to_owned(),
            key: key.to_owned(),
            message_id: Uuid::now_v7(),
            saga_id: None,
            step: None,
            attempt: 0,
            traceparent: crate::telemetry::current_traceparent(),
            payload: payload.encode_to_vec(),
        }
    }

    pub fn with_saga(mut self, saga_id: &str, step: &str, attempt: u32) -> Self {
        self.saga_id = Some(saga_id.to_owned());
        self.step = Some(step.to_owned());
        self.attempt = attempt;
        self
    }

    /// What the broker would refuse, found before anything is written or sent.
    pub fn validate(&self) -> Result<(), MessagingError> {
        let problem = if self.payload.is_empty() {
            Some(
                "has an empty payload (the broker refuses empty bodies; wrap it in an envelope)"
                    .to_owned(),
            )
        } else if self.payload.len() > MAX_PAYLOAD {
            Some(format!(
                "has a payload of {} bytes, above {MAX_PAYLOAD}",
                self.payload.len()
            ))
        } else if self.topic.is_empty()
            || !self
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-%".contains(c))
        {
            Some(format!("has an invalid topic {:?}", self.topic))
        } else if self.tag.is_empty() || self.tag.chars().any(|c| c.is_whitespace() || c == '|') {
            Some(format!("has an invalid tag {:?}", self.tag))
        } else if self.key.chars().any(char::is_whitespace) {
            Some(format!("has a key with spaces {:?}", self.key))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(MessagingError::Invalid(format!(
                "message {} {problem}",
                self.message_id
            ))),
            None => Ok(()),
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }
}

/// A delivered message, with the namespace prefix taken off its topic.
#[derive(Clone, Debug)]
pub struct IncomingMessage {
    pub topic: String,
    pub tag: String,
    pub key: String,
    /// The contract's `message_id`; falls back to the broker's id for foreign messages.
    pub message_id: String,
    pub saga_id: Option<String>,
    pub step: Option<String>,
    pub attempt: u32,
    pub traceparent: Option<String>,
    pub body: Bytes,
    /// How many times the broker redelivered this message after a failed attempt.
    pub reconsume_times: i32,
    /// The broker's own id of this delivery (new on every send; never used to deduplicate).
    pub broker_message_id: String,
    /// The queue the message was stored in (all messages of one order share one).
    pub queue_id: i32,
    /// The topic it was delivered from (no namespace): its own, or `%RETRY%<group>` or
    /// `%DLQ%<group>` for a message the broker moved.
    pub delivered_from: String,
    /// When the broker stored it (milliseconds since the epoch; 0 when unknown).
    pub stored_at_ms: i64,
}

impl IncomingMessage {
    /// Decodes the protobuf payload; an undecodable payload is rejected, never retried.
    pub fn decode<T: prost::Message + Default>(&self) -> Result<T, HandleError> {
        T::decode(self.body.as_ref()).map_err(|err| {
            HandleError::Reject(format!(
                "payload of {}/{} is not a valid {}: {err}",
                self.topic,
                self.tag,
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> OutgoingMessage {
        let deduct = ticket_proto::saga::v1::StockDeduct {
            tier_id: 1,
            user_id: "u1".into(),
            quantity: 1,
        };
        OutgoingMessage::new("STOCK_TOPIC", "STOCK_DEDUCT", "ORD-1", &deduct)
    }

    #[test]
    fn what_the_broker_refuses_is_found_before_sending() {
        assert!(message().validate().is_ok());
        assert!(
            OutgoingMessage {
                payload: vec![],
                ..message()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutgoingMessage {
                payload: vec![1; MAX_PAYLOAD + 1],
                ..message()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutgoingMessage {
                tag: "A B".into(),
                ..message()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutgoingMessage {
                tag: String::new(),
                ..message()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutgoingMessage {
                topic: "BAD TOPIC".into(),
                ..message()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutgoingMessage {
                key: "ORD 1".into(),
                ..message()
            }
            .validate()
            .is_err()
        );
    }
}

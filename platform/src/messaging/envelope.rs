//! What travels with every message: the payload plus the properties of the message contract
//! (`message_id`, `saga_id`, `step`, `attempt`, `traceparent`); the key is the order number.

use bytes::Bytes;
use uuid::Uuid;

use super::consumer::HandleError;

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
            traceparent: None,
            payload: payload.encode_to_vec(),
        }
    }

    pub fn with_saga(mut self, saga_id: &str, step: &str, attempt: u32) -> Self {
        self.saga_id = Some(saga_id.to_owned());
        self.step = Some(step.to_owned());
        self.attempt = attempt;
        self
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

//! RocketMQ messaging over `rocketmq-client-rust`: topic names under a namespace, a publisher
//! that keeps the messages of one order on one queue, and a consumer that runs an `async`
//! handler per message, acknowledging only after the handler returned.

mod consumer;
mod envelope;
mod publisher;
mod runtime;
mod topics;

pub use consumer::{Consumer, ConsumerSettings, HandleError, MessageHandler};
pub use envelope::{IncomingMessage, OutgoingMessage, property};
pub use publisher::Publisher;
pub use runtime::{MessagingConfig, MessagingRuntime};
pub use topics::{DLQ_PREFIX, Namespace, tag, tag_expression, topic};

/// Why a messaging call failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("invalid messaging setting: {0}")]
    Invalid(String),
    #[error("RocketMQ client runtime: {0}")]
    Runtime(String),
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("consumer group {group}: {reason}")]
    Consumer { group: String, reason: String },
}

//! What the orchestrator hears over RocketMQ: order events on `ORDER_TOPIC` start and steer
//! purchases; participants' replies on `SAGA_REPLY_TOPIC` move them on. Both are idempotent in
//! the engine (a saga per order number; replies deduplicated by saga, step and attempt), so a
//! redelivered message changes nothing.

use ticket_platform::messaging::{HandleError, IncomingMessage, MessageHandler, tag};
use ticket_proto::saga::v1::{OrderCancelled, OrderCreated, OrderPaid, Reply};

use crate::error::Error;
use crate::saga::engine::Engine;
use crate::saga::machine::Signal;
use crate::saga::purchase::{CancelReason, Purchase, PurchaseData};

pub const EVENTS_GROUP: &str = "orchestrator-events";
pub const REPLIES_GROUP: &str = "orchestrator-replies";
pub const EVENT_TAGS: &[&str] = &[tag::ORDER_CREATED, tag::ORDER_PAID, tag::ORDER_CANCELLED];

fn retry(err: Error) -> HandleError {
    match err {
        Error::Database(_) => HandleError::Retry(err.to_string()),
        other => HandleError::Reject(other.to_string()),
    }
}

pub struct OrderEvents {
    pub engine: Engine<Purchase>,
}

impl MessageHandler for OrderEvents {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        match message.tag.as_str() {
            tag::ORDER_CREATED => {
                let created: OrderCreated = message.decode()?;
                if created.order_no.is_empty() || created.quantity <= 0 || created.tier_id <= 0 {
                    return Err(HandleError::Reject(format!(
                        "ORDER_CREATED is incomplete: {created:?}"
                    )));
                }
                let data = PurchaseData {
                    user_id: created.user_id,
                    tier_id: created.tier_id,
                    quantity: created.quantity,
                    unit_price_cents: None,
                    cancel_reason: None,
                };
                self.engine
                    .start(&created.order_no, data)
                    .await
                    .map_err(retry)
            }
            tag::ORDER_PAID => {
                let paid: OrderPaid = message.decode()?;
                self.engine
                    .signal(&paid.order_no, Signal::PivotPassed)
                    .await
                    .map_err(retry)
            }
            tag::ORDER_CANCELLED => {
                let cancelled: OrderCancelled = message.decode()?;
                // Cancellations the saga made itself change nothing; the buyer's undo it.
                if CancelReason::parse(&cancelled.reason) != Some(CancelReason::UserCancelled) {
                    return Ok(());
                }
                self.engine
                    .signal(&cancelled.order_no, Signal::Abort)
                    .await
                    .map_err(retry)
            }
            other => Err(HandleError::Reject(format!("unexpected tag {other}"))),
        }
    }
}

pub struct Replies {
    pub engine: Engine<Purchase>,
}

impl MessageHandler for Replies {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let reply: Reply = message.decode()?;
        if reply.saga_id.is_empty() || reply.step.is_empty() {
            return Err(HandleError::Reject(format!(
                "a reply without saga or step: {reply:?}"
            )));
        }
        self.engine.on_reply(&reply).await.map_err(retry)
    }
}

//! What the orchestrator hears of orders: events on `ORDER_TOPIC` (or, when the broker does not
//! take them, the same events over gRPC: `SagaEvents.Deliver`) start and steer purchases;
//! participants' replies on `SAGA_REPLY_TOPIC` move them on. Both are idempotent in the engine
//! (a saga per order number; replies deduplicated by saga, step and attempt), so a message that
//! arrives twice, or both ways, changes nothing. New orders, payments, cancels and replies that
//! arrive together are handled together, a batch per engine transaction ([`GroupCommit`]).

use ticket_platform::group_commit::GroupCommit;
use ticket_platform::messaging::{HandleError, IncomingMessage, MessageHandler, tag};
use ticket_proto::saga::v1::order_event::Event;
use ticket_proto::saga::v1::{
    EventAccepted, OrderCancelled, OrderCreated, OrderEvent, OrderPaid, Reply,
};
use tonic::{Request, Response, Status};

use crate::Batches;
use crate::error::{Error, identifier};
use crate::saga::engine::Engine;
use crate::saga::machine::Signal;
use crate::saga::purchase::{CancelReason, Purchase, PurchaseData};

pub const EVENTS_GROUP: &str = "orchestrator-events";
pub const REPLIES_GROUP: &str = "orchestrator-replies";
pub const EVENT_TAGS: &[&str] = &[tag::ORDER_CREATED, tag::ORDER_PAID, tag::ORDER_CANCELLED];

/// Where order events go in, however they arrived: new orders start their sagas in batches,
/// payments and buyers' cancels reach theirs in batches.
#[derive(Clone)]
pub struct Intake {
    /// New orders, each with the trace of the event that announced it.
    starts: GroupCommit<(String, PurchaseData, Option<String>), Error>,
    signals: GroupCommit<(String, Signal), Error>,
}

impl Intake {
    pub fn new(engine: Engine<Purchase>, batches: Batches) -> Self {
        let starter = engine.clone();
        let starts = GroupCommit::start(batches.max, batches.concurrency, move |orders| {
            let engine = starter.clone();
            async move { engine.start_traced(orders).await }
        });
        let signals = GroupCommit::start(batches.max, batches.concurrency, move |signals| {
            let engine = engine.clone();
            async move { engine.signal_many(&signals).await }
        });
        Self { starts, signals }
    }
}

/// Acts on one order event.
async fn apply(intake: &Intake, event: Event) -> Result<(), Error> {
    match event {
        Event::Created(created) => {
            let order_no = identifier("ORDER_CREATED order_no", &created.order_no)?;
            let user_id = identifier("ORDER_CREATED user_id", &created.user_id)?;
            if created.quantity <= 0 || created.tier_id <= 0 {
                return Err(Error::Invalid(format!(
                    "ORDER_CREATED {order_no}: tier_id and quantity must be positive, got {} and {}",
                    created.tier_id, created.quantity
                )));
            }
            let data = PurchaseData {
                user_id,
                tier_id: created.tier_id,
                quantity: created.quantity,
                unit_price_cents: None,
                cancel_reason: None,
                reserved: false,
            };
            let traceparent = ticket_platform::telemetry::current_traceparent();
            intake.starts.submit((order_no, data, traceparent)).await
        }
        Event::Paid(paid) => {
            let order_no = identifier("ORDER_PAID order_no", &paid.order_no)?;
            intake.signals.submit((order_no, Signal::PivotPassed)).await
        }
        Event::Cancelled(cancelled) => {
            let order_no = identifier("ORDER_CANCELLED order_no", &cancelled.order_no)?;
            let reason = CancelReason::parse(&cancelled.reason).ok_or_else(|| {
                let known: Vec<&str> = CancelReason::ALL.iter().map(|r| r.as_str()).collect();
                Error::Invalid(format!(
                    "ORDER_CANCELLED {order_no}: reason must be one of {}, got {:?}",
                    known.join(", "),
                    cancelled.reason
                ))
            })?;
            // Cancellations the saga made itself change nothing; the buyer's undo it.
            if reason != CancelReason::UserCancelled {
                return Ok(());
            }
            intake.signals.submit((order_no, Signal::Abort)).await
        }
    }
}

fn handle_error(err: Error) -> HandleError {
    match err {
        Error::Database(_) | Error::Unavailable(_) => HandleError::Retry(err.to_string()),
        other => HandleError::Reject(other.to_string()),
    }
}

pub struct OrderEvents {
    intake: Intake,
}

impl OrderEvents {
    pub fn new(intake: Intake) -> Self {
        Self { intake }
    }
}

impl MessageHandler for OrderEvents {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let event = match message.tag.as_str() {
            tag::ORDER_CREATED => Event::Created(message.decode::<OrderCreated>()?),
            tag::ORDER_PAID => Event::Paid(message.decode::<OrderPaid>()?),
            tag::ORDER_CANCELLED => Event::Cancelled(message.decode::<OrderCancelled>()?),
            other => return Err(HandleError::Reject(format!("unexpected tag {other}"))),
        };
        apply(&self.intake, event).await.map_err(handle_error)
    }
}

pub struct Replies {
    batches: GroupCommit<Reply, Error>,
}

impl Replies {
    pub fn new(engine: Engine<Purchase>, batches: Batches) -> Self {
        let batches = GroupCommit::start(batches.max, batches.concurrency, move |replies| {
            let engine = engine.clone();
            async move { engine.on_replies(&replies).await }
        });
        Self { batches }
    }
}

impl MessageHandler for Replies {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let reply: Reply = message.decode()?;
        if reply.saga_id.is_empty() || reply.step.is_empty() {
            return Err(HandleError::Reject(format!(
                "a reply without saga or step: {reply:?}"
            )));
        }
        self.batches.submit(reply).await.map_err(handle_error)
    }
}

/// `SagaEvents`: the same events over gRPC.
pub struct SagaEventsApi {
    pub intake: Intake,
    /// The service token opens `Deliver`.
    pub access: ticket_platform::auth::Access,
}

#[tonic::async_trait]
impl ticket_proto::saga::v1::saga_events_server::SagaEvents for SagaEventsApi {
    async fn deliver(
        &self,
        request: Request<OrderEvent>,
    ) -> Result<Response<EventAccepted>, Status> {
        self.access.service(&request)?;
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| Error::Invalid("the event is empty".into()))?;
        apply(&self.intake, event).await?;
        Ok(Response::new(EventAccepted {}))
    }
}

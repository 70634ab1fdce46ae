//! The saga's stock commands, as they arrive over RocketMQ (`STOCK_TOPIC`) and over gRPC
//! (`Participant.Execute`): the same checks, the same handler ([`Stock::execute`]), the same
//! reply. A command that is malformed (no body, empty ids, not a stock command) can never
//! succeed: over RocketMQ it goes to the dead letters with the reason, over gRPC it gets
//! `INVALID_ARGUMENT`. A business refusal (sold out, limit, unknown tier) is a `REFUSED` reply
//! the orchestrator compensates on; a passing failure (Redis or Postgres down) is retried.

use sea_orm::DatabaseConnection;
use ticket_platform::inbox;
use ticket_platform::messaging::{
    HandleError, IncomingMessage, MessageHandler, OutgoingMessage, tag, topic,
};
use ticket_platform::outbox;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{Command, Reply, ReplyOutcome, StockDeducted};
use tonic::{Request, Response, Status};

use crate::error::{Error, require_admin};
use crate::gate::{FenceOutcome, PredeductOutcome};
use crate::stock::{Effect, Record, Stock, StockRequest, StockStep};

/// The consumer group of stock-svc on `STOCK_TOPIC` (the namespace is added).
pub const CONSUMER_GROUP: &str = "stock-svc";
/// The tags stock-svc takes from `STOCK_TOPIC`.
pub const TAGS: &[&str] = &[
    tag::STOCK_DEDUCT,
    tag::STOCK_CONFIRM,
    tag::STOCK_ROLLBACK,
    tag::STOCK_SYNC,
];

/// A checked stock command: its envelope and what it asks of the stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockCommand {
    pub saga_id: String,
    pub step: String,
    pub attempt: u32,
    /// The tag the command travels under on `STOCK_TOPIC`.
    pub tag: &'static str,
    pub request: StockRequest,
}

impl TryFrom<&Command> for StockCommand {
    type Error = Error;

    fn try_from(command: &Command) -> Result<Self, Error> {
        if command.saga_id.trim().is_empty() {
            return Err(Error::Invalid("the command has no saga_id".into()));
        }
        if command.step.is_empty()
            || command.step.len() > 64
            || command
                .step
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(Error::Invalid(format!(
                "the command's step {:?} is not a name of letters, digits, '_' or '-'",
                command.step
            )));
        }
        let (tag, step) = match &command.body {
            Some(Body::StockDeduct(deduct)) => (
                tag::STOCK_DEDUCT,
                StockStep::Prededuct {
                    tier_id: deduct.tier_id,
                    user_id: deduct.user_id.clone(),
                    quantity: i64::from(deduct.quantity),
                },
            ),
            Some(Body::StockConfirm(confirm)) => (
                tag::STOCK_CONFIRM,
                StockStep::Confirm {
                    tier_id: confirm.tier_id,
                },
            ),
            Some(Body::StockRollback(rollback)) => (
                tag::STOCK_ROLLBACK,
                StockStep::Rollback {
                    tier_id: rollback.tier_id,
                },
            ),
            Some(Body::StockSync(sync)) => (
                tag::STOCK_SYNC,
                StockStep::Sync {
                    tier_id: sync.tier_id,
                },
            ),
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "stock-svc does not handle {} commands",
                    body_name(other)
                )));
            }
            None => return Err(Error::Invalid("the command has no body".into())),
        };
        Ok(Self {
            saga_id: command.saga_id.clone(),
            step: command.step.clone(),
            attempt: command.attempt,
            tag,
            request: StockRequest::new(&command.order_no, step)?,
        })
    }
}

fn body_name(body: &Body) -> &'static str {
    match body {
        Body::StockDeduct(_) => tag::STOCK_DEDUCT,
        Body::StockConfirm(_) => tag::STOCK_CONFIRM,
        Body::StockRollback(_) => tag::STOCK_ROLLBACK,
        Body::StockSync(_) => tag::STOCK_SYNC,
        Body::OrderReserve(_) => tag::ORDER_RESERVE,
        Body::OrderConfirm(_) => tag::ORDER_CONFIRM,
        Body::OrderCancel(_) => tag::ORDER_CANCEL,
        Body::Notify(_) => "NOTIFY",
    }
}

impl StockCommand {
    fn reply(
        &self,
        outcome: ReplyOutcome,
        reason: &str,
        detail: String,
        body: Option<ReplyBody>,
    ) -> Reply {
        Reply {
            saga_id: self.saga_id.clone(),
            order_no: self.request.order_no.clone(),
            step: self.step.clone(),
            attempt: self.attempt,
            outcome: outcome as i32,
            reason: reason.to_owned(),
            detail,
            body,
        }
    }

    fn refused(&self, reason: &str, detail: String) -> Reply {
        self.reply(ReplyOutcome::Refused, reason, detail, None)
    }

    /// The reply to what the handler did. A passing failure is given back, to be retried.
    pub fn answer(&self, result: Result<Effect, Error>) -> Result<Reply, Error> {
        let order = &self.request.order_no;
        let tier = self.request.step.tier_id();
        let ok = |detail: String, body| self.reply(ReplyOutcome::Ok, "", detail, body);
        Ok(match result {
            Ok(Effect::Prededucted(answer)) => match answer.outcome {
                PredeductOutcome::Deducted => ok(
                    format!("order {order} holds its tickets; {} left", answer.available),
                    Some(ReplyBody::StockDeducted(StockDeducted {
                        unit_price_cents: answer.unit_price_cents,
                        available: answer.available,
                    })),
                ),
                PredeductOutcome::SoldOut => self.refused(
                    "SOLD_OUT",
                    format!("tier {tier} has {} ticket(s) left", answer.available),
                ),
                PredeductOutcome::LimitReached => self.refused(
                    "LIMIT_REACHED",
                    format!("the buyer would hold more tickets of tier {tier} than its limit"),
                ),
                PredeductOutcome::SaleNotOpen => self.refused(
                    "SALE_NOT_OPEN",
                    format!("the sale of tier {tier} has not opened"),
                ),
                PredeductOutcome::SaleClosed => {
                    self.refused("SALE_CLOSED", format!("the sale of tier {tier} has closed"))
                }
                PredeductOutcome::AlreadyRolledBack => self.refused(
                    "ALREADY_ROLLED_BACK",
                    format!("order {order} was rolled back before its deduct arrived"),
                ),
            },
            Ok(Effect::Changed(change)) => match change.outcome {
                FenceOutcome::Confirmed => ok(
                    format!("{} ticket(s) of order {order} sold", change.quantity),
                    None,
                ),
                FenceOutcome::RolledBack => ok(
                    format!(
                        "{} ticket(s) of order {order} back in stock",
                        change.quantity
                    ),
                    None,
                ),
                FenceOutcome::AlreadyConfirmed => self.refused(
                    "ALREADY_CONFIRMED",
                    format!("order {order} is confirmed; its tickets cannot be returned"),
                ),
                FenceOutcome::AlreadyRolledBack => self.refused(
                    "ALREADY_ROLLED_BACK",
                    format!("order {order} was rolled back; it cannot be confirmed"),
                ),
                FenceOutcome::UnknownOrder => self.refused(
                    "UNKNOWN_ORDER",
                    format!("order {order} holds no tickets of tier {tier}"),
                ),
            },
            Ok(Effect::Synced(counters)) => ok(
                format!(
                    "tier {tier}: available {}, deducted {}, confirmed {} written to Postgres",
                    counters.available, counters.deducted, counters.confirmed
                ),
                None,
            ),
            Err(Error::NotFound(detail)) => self.refused("UNKNOWN_TIER", detail),
            Err(Error::Invalid(detail)) => self.refused("INVALID_ARGUMENT", detail),
            Err(other) => return Err(other),
        })
    }
}

/// The `STOCK_TOPIC` consumer: inbox row, script, ledger and outbox reply in one transaction.
pub struct CommandConsumer {
    pub stock: Stock,
}

impl MessageHandler for CommandConsumer {
    #[tracing::instrument(skip_all, fields(order_no = %message.key, saga_id))]
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let retry = |err: &dyn std::fmt::Display| HandleError::Retry(err.to_string());
        let command = StockCommand::try_from(&message.decode::<Command>()?)
            .map_err(|err| HandleError::Reject(err.to_string()))?;
        tracing::Span::current().record("saga_id", command.saga_id.as_str());
        if message.tag != command.tag {
            return Err(HandleError::Reject(format!(
                "tag {} does not match the command's body {}",
                message.tag, command.tag
            )));
        }
        let Some(txn) = inbox::begin(&self.stock.db, CONSUMER_GROUP, &message.message_id)
            .await
            .map_err(|err| retry(&err))?
        else {
            return Ok(());
        };
        let result = self.stock.execute(&command.request, Record::In(&txn)).await;
        let reply = command.answer(result).map_err(|err| retry(&err))?;
        let out = OutgoingMessage::new(
            topic::SAGA_REPLY,
            &command.step,
            &command.request.order_no,
            &reply,
        )
        .with_saga(&command.saga_id, &command.step, command.attempt)
        .with_traceparent(message.traceparent.clone());
        outbox::enqueue(&txn, &[out])
            .await
            .map_err(|err| retry(&err))?;
        txn.commit().await.map_err(|err| retry(&err))?;
        Ok(())
    }
}

/// `Participant.Execute`: the orchestrator's synchronous path. Needs the admin token.
pub struct Participant {
    pub stock: Stock,
    pub admin_token: String,
}

#[tonic::async_trait]
impl ticket_proto::saga::v1::participant_server::Participant for Participant {
    #[tracing::instrument(skip_all, fields(order_no, saga_id))]
    async fn execute(&self, request: Request<Command>) -> Result<Response<Reply>, Status> {
        require_admin(&request, &self.admin_token)?;
        let command = StockCommand::try_from(request.get_ref())?;
        let span = tracing::Span::current();
        span.record("order_no", command.request.order_no.as_str());
        span.record("saga_id", command.saga_id.as_str());
        let result = self
            .stock
            .execute(&command.request, Record::<DatabaseConnection>::Writer)
            .await;
        let reply = match command.answer(result) {
            Ok(reply) => reply,
            Err(err) => {
                tracing::error!(error = %err, "stock command failed; the orchestrator may retry");
                command.reply(
                    ReplyOutcome::Failed,
                    "UNAVAILABLE",
                    format!("stock-svc could not complete the step: {err}"),
                    None,
                )
            }
        };
        Ok(Response::new(reply))
    }
}

//! order-svc's saga commands (`ORDER_RESERVE`, `ORDER_CONFIRM`, `ORDER_CANCEL`), behind both
//! doors: the `ORDER_CMD_TOPIC` consumer and `Participant.Execute`. Each is idempotent: a
//! repeated command finds the order already changed and answers OK again.

use chrono::DateTime;
use sea_orm::DatabaseTransaction;
use ticket_platform::messaging::tag;
use ticket_platform::participant::{Answer, CommandHandler};
use ticket_proto::saga::v1::Command;
use ticket_proto::saga::v1::command::Body;

use crate::error::Error;
use crate::order_api::{MAX_ID_LEN, identifier};
use crate::orders::{self, CancelReason};

/// The consumer group of order-svc on `ORDER_CMD_TOPIC` (the namespace is added).
pub const CONSUMER_GROUP: &str = "order-svc";
/// The tags order-svc takes from `ORDER_CMD_TOPIC`.
pub const TAGS: &[&str] = &[tag::ORDER_RESERVE, tag::ORDER_CONFIRM, tag::ORDER_CANCEL];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderStep {
    Reserve {
        unit_price_cents: i64,
        expire_at: DateTime<chrono::Utc>,
    },
    Confirm,
    Cancel {
        reason: CancelReason,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderCommand {
    pub order_no: String,
    pub step: OrderStep,
}

fn order_command(command: &Command) -> Result<(OrderCommand, &'static str), Error> {
    let order_no = identifier("order_no", &command.order_no, MAX_ID_LEN)?;
    let (step, tag) = match &command.body {
        Some(Body::OrderReserve(reserve)) => {
            if reserve.unit_price_cents < 0 {
                return Err(Error::Invalid(format!(
                    "unit_price_cents must not be negative, got {}",
                    reserve.unit_price_cents
                )));
            }
            let expire_at = reserve
                .expire_at
                .and_then(|at| ticket_platform::time::instant(&at))
                .ok_or_else(|| Error::Invalid("expire_at is missing or not a time".into()))?;
            (
                OrderStep::Reserve {
                    unit_price_cents: reserve.unit_price_cents,
                    expire_at,
                },
                tag::ORDER_RESERVE,
            )
        }
        Some(Body::OrderConfirm(_)) => (OrderStep::Confirm, tag::ORDER_CONFIRM),
        Some(Body::OrderCancel(cancel)) => {
            let reason = CancelReason::parse(&cancel.reason).ok_or_else(|| {
                Error::Invalid(format!(
                    "cancel reason {:?} is not one of SOLD_OUT, LIMIT_REACHED, \
                     USER_CANCELLED, PAYMENT_EXPIRED, SYSTEM",
                    cancel.reason
                ))
            })?;
            (OrderStep::Cancel { reason }, tag::ORDER_CANCEL)
        }
        Some(_) => {
            return Err(Error::Invalid(
                "order-svc handles ORDER_RESERVE, ORDER_CONFIRM and ORDER_CANCEL only".into(),
            ));
        }
        None => return Err(Error::Invalid("the command has no body".into())),
    };
    Ok((OrderCommand { order_no, step }, tag))
}

pub struct OrderCommands {
    pub metrics: crate::metrics::OrderMetrics,
}

impl CommandHandler for OrderCommands {
    type Checked = OrderCommand;

    fn check(&self, command: &Command) -> Result<(OrderCommand, &'static str), String> {
        order_command(command).map_err(|err| err.to_string())
    }

    #[tracing::instrument(name = "order step", skip_all, fields(order_no = %command.order_no))]
    async fn run(
        &self,
        command: &OrderCommand,
        txn: &DatabaseTransaction,
    ) -> Result<Answer, String> {
        let order_no = command.order_no.as_str();
        let result = match &command.step {
            OrderStep::Reserve {
                unit_price_cents,
                expire_at,
            } => orders::reserve(txn, order_no, *unit_price_cents, *expire_at)
                .await
                // Only a cancel is counted by whether it changed the order.
                .map(|order| (order, false)),
            OrderStep::Confirm => orders::confirm(txn, order_no)
                .await
                .map(|order| (order, false)),
            OrderStep::Cancel { reason } => orders::cancel(txn, order_no, *reason, None).await,
        };
        match result {
            Ok((order, applied)) => Ok(Answer::ok(
                format!("order {order_no} is {}", order.status),
                None,
            )
            .applied(applied)),
            Err(err) if err.is_transient() => Err(err.to_string()),
            Err(Error::Precondition { reason, detail }) => Ok(Answer::refused(reason, detail)),
            Err(Error::NotFound(detail)) => Ok(Answer::refused("UNKNOWN_ORDER", detail)),
            Err(other) => Ok(Answer::refused("INVALID_ARGUMENT", other.to_string())),
        }
    }

    /// A cancel is counted once its transaction committed, and only the one that cancelled.
    fn committed(&self, command: &OrderCommand, answer: &Answer) {
        if let OrderStep::Cancel { reason } = &command.step
            && answer.applied
        {
            self.metrics.cancelled(*reason);
        }
    }
}

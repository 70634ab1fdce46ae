//! The purchase saga, declared:
//!
//! ```text
//! ORDER_CREATED ─► STOCK_DEDUCT ─► ORDER_RESERVE ─► AWAIT_PAYMENT (pivot) ─► STOCK_CONFIRM ─► ORDER_CONFIRM
//!               ─► NOTIFY (SMS, EMAIL, PUSH)
//! undo: ORDER_CANCEL first (refused as ORDER_PAID: the purchase goes on), then STOCK_ROLLBACK
//!       ─► NOTIFY_CANCELLED (SMS, EMAIL, PUSH; announced)
//! ```
//!
//! - `STOCK_DEDUCT` answers with the tier's unit price, which `ORDER_RESERVE` sets on the order
//!   with the payment deadline (fixed when the reserve is first sent).
//! - A deduct refused (sold out, the buyer's limit) undoes the saga with that reason; a reserve
//!   refused means the buyer cancelled the pending order.
//! - At the deadline the order is cancelled as `PAYMENT_EXPIRED`; order-svc cancels only an
//!   order still awaiting payment, so a payment that won the race makes the cancel refused
//!   (`ORDER_PAID`), and the purchase goes on. The stock returns only after the cancel
//!   succeeded.
//! - The buyer is told on every channel by one step after the confirmation, one command naming
//!   the channels: notify-svc queues each once per (order, channel, event), so a retried
//!   command sends nothing twice. It has a timeout and retries like any step (a notification
//!   refused outright is logged by notify-svc and not retried).
//! - A purchase undone after its order was reserved (the buyer saw it awaiting payment) tells
//!   the buyer on every channel, once, when it ends compensated; one undone before (sold out,
//!   the buyer's limit) was answered to the buyer already and tells nothing more.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ticket_platform::messaging::tag;
use ticket_platform::time::timestamp;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{
    Notify, OrderCancel, OrderConfirm, OrderReserve, Reply, ReplyOutcome, StockConfirm,
    StockDeduct, StockRollback,
};

use super::definition::{
    Declaration, Participant, RetryPolicy, SagaType, Skip, StepKind, StepName, StepSpec, Undo,
    Verdict,
};

/// The steps of the purchase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    StockDeduct,
    OrderReserve,
    AwaitPayment,
    StockConfirm,
    OrderConfirm,
    StockRollback,
    OrderCancel,
    /// The buyer told of the purchase, on every channel.
    Notify,
    /// The buyer told of the undo, on every channel.
    NotifyCancelled,
    // Retired: one step per channel, before a notification went as one command. Still named by
    // the logs of sagas from then (read, never declared); migration 000306 moved the sagas not
    // ended at one of them to `Notify`, and a saga met at one later goes on at `Notify`
    // (`Declaration::retired`).
    NotifySms,
    NotifyEmail,
    NotifyPush,
    NotifyCancelledSms,
    NotifyCancelledEmail,
    NotifyCancelledPush,
}

impl Step {
    /// A notification step, current or retired: its refusal holds up nothing.
    fn notifies(self) -> bool {
        matches!(
            self,
            Self::Notify
                | Self::NotifyCancelled
                | Self::NotifySms
                | Self::NotifyEmail
                | Self::NotifyPush
                | Self::NotifyCancelledSms
                | Self::NotifyCancelledEmail
                | Self::NotifyCancelledPush
        )
    }
}

impl StepName for Step {
    const ALL: &'static [Self] = &[
        Self::StockDeduct,
        Self::OrderReserve,
        Self::AwaitPayment,
        Self::StockConfirm,
        Self::OrderConfirm,
        Self::StockRollback,
        Self::OrderCancel,
        Self::Notify,
        Self::NotifyCancelled,
        Self::NotifySms,
        Self::NotifyEmail,
        Self::NotifyPush,
        Self::NotifyCancelledSms,
        Self::NotifyCancelledEmail,
        Self::NotifyCancelledPush,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::StockDeduct => tag::STOCK_DEDUCT,
            Self::OrderReserve => tag::ORDER_RESERVE,
            Self::AwaitPayment => "AWAIT_PAYMENT",
            Self::StockConfirm => tag::STOCK_CONFIRM,
            Self::OrderConfirm => tag::ORDER_CONFIRM,
            Self::StockRollback => tag::STOCK_ROLLBACK,
            Self::OrderCancel => tag::ORDER_CANCEL,
            Self::Notify => "NOTIFY",
            Self::NotifyCancelled => "NOTIFY_CANCELLED",
            Self::NotifySms => "NOTIFY_SMS",
            Self::NotifyEmail => "NOTIFY_EMAIL",
            Self::NotifyPush => "NOTIFY_PUSH",
            Self::NotifyCancelledSms => "NOTIFY_CANCELLED_SMS",
            Self::NotifyCancelledEmail => "NOTIFY_CANCELLED_EMAIL",
            Self::NotifyCancelledPush => "NOTIFY_CANCELLED_PUSH",
        }
    }
}

/// notify-svc's templates of a confirmed purchase and of a cancelled order.
const CONFIRMED: &str = "purchase_confirmed";
const CANCELLED: &str = "order_cancelled";
/// The channels every notification goes on.
const CHANNELS: [&str; 3] = [tag::SMS, tag::EMAIL, tag::PUSH];

/// Why a purchase was undone; order-svc keeps it on the cancelled order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelReason {
    SoldOut,
    LimitReached,
    UserCancelled,
    PaymentExpired,
    System,
}

impl CancelReason {
    pub const ALL: [Self; 5] = [
        Self::SoldOut,
        Self::LimitReached,
        Self::UserCancelled,
        Self::PaymentExpired,
        Self::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "SOLD_OUT",
            Self::LimitReached => "LIMIT_REACHED",
            Self::UserCancelled => "USER_CANCELLED",
            Self::PaymentExpired => "PAYMENT_EXPIRED",
            Self::System => "SYSTEM",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// What a purchase carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseData {
    pub user_id: String,
    pub tier_id: i64,
    pub quantity: i32,
    /// The tier's price, from the deduct's reply.
    #[serde(default)]
    pub unit_price_cents: Option<i64>,
    /// Why the purchase is undone; the first reason stays.
    #[serde(default)]
    pub cancel_reason: Option<CancelReason>,
    /// The order was reserved (it awaited payment): an undo is told to the buyer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reserved: bool,
}

/// Durations the purchase saga is built with (configurable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SagaSettings {
    pub step_timeout: Duration,
    pub retry: RetryPolicy,
    pub payment_window: Duration,
    /// How long after an order's payment deadline the saga cancels it: the payment's own
    /// check runs on order-svc's database clock, which may run behind this host's.
    pub expiry_margin: Duration,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 5,
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
            },
            payment_window: Duration::from_secs(15 * 60),
            expiry_margin: Duration::from_secs(2),
        }
    }
}

/// The purchase saga type.
pub struct Purchase {
    declaration: Declaration<Step>,
}

impl Purchase {
    pub const NAME: &'static str = "PURCHASE";

    pub fn new(settings: &SagaSettings) -> Self {
        let spec = |name, kind, compensation, skip| StepSpec {
            name,
            kind,
            compensation,
            timeout: settings.step_timeout,
            retry: settings.retry,
            skip,
        };
        let command = |participant, name: Step| StepKind::Command {
            participant,
            tag: name.as_str(),
        };
        let stock = |name| command(Participant::Stock, name);
        let order = |name| command(Participant::Order, name);
        let notify = |name| {
            let kind = StepKind::Command {
                participant: Participant::Notify,
                tag: tag::NOTIFY,
            };
            spec(name, kind, None, Skip::Allowed)
        };
        let declaration = Declaration {
            name: Self::NAME,
            forward: vec![
                spec(
                    Step::StockDeduct,
                    stock(Step::StockDeduct),
                    Some(Step::StockRollback),
                    Skip::Refused("the order would be reserved with no tickets held for it"),
                ),
                spec(
                    Step::OrderReserve,
                    order(Step::OrderReserve),
                    None,
                    Skip::Refused("the order would never carry its price and deadline"),
                ),
                spec(
                    Step::AwaitPayment,
                    StepKind::Wait {
                        window: settings.payment_window,
                        fixed_by: Step::OrderReserve,
                        margin: settings.expiry_margin,
                    },
                    None,
                    Skip::Refused("an unpaid order would be confirmed"),
                ),
                spec(
                    Step::StockConfirm,
                    stock(Step::StockConfirm),
                    None,
                    Skip::Allowed,
                ),
                spec(
                    Step::OrderConfirm,
                    order(Step::OrderConfirm),
                    None,
                    Skip::Allowed,
                ),
                notify(Step::Notify),
            ],
            compensations: vec![
                spec(
                    Step::OrderCancel,
                    order(Step::OrderCancel),
                    None,
                    Skip::Refused(
                        "the stock returns only after the order's cancel succeeded; \
                         without it a paid buyer could lose the tickets",
                    ),
                ),
                spec(
                    Step::StockRollback,
                    stock(Step::StockRollback),
                    None,
                    Skip::Allowed,
                ),
            ],
            pivot: Step::AwaitPayment,
            abort: Step::OrderCancel,
            on_complete: Vec::new(),
            on_compensated: vec![notify(Step::NotifyCancelled)],
            // An orchestrator of the version before may still move a saga to one of these
            // while the two run side by side: the saga goes on at NOTIFY, which queues what
            // is not queued yet.
            retired: vec![
                (Step::NotifySms, Step::Notify),
                (Step::NotifyEmail, Step::Notify),
                (Step::NotifyPush, Step::Notify),
                (Step::NotifyCancelledSms, Step::NotifyCancelled),
                (Step::NotifyCancelledEmail, Step::NotifyCancelled),
                (Step::NotifyCancelledPush, Step::NotifyCancelled),
            ],
        };
        Self { declaration }
    }
}

impl SagaType for Purchase {
    type Step = Step;
    type Data = PurchaseData;

    fn declaration(&self) -> &Declaration<Step> {
        &self.declaration
    }

    fn judge(&self, data: &mut PurchaseData, step: Step, reply: &Reply) -> Verdict {
        let refused = match reply.outcome() {
            ReplyOutcome::Ok => {
                if step == Step::StockDeduct {
                    // The reserve needs the price: a deduct answered without a usable one is
                    // asked again (the same key: stock-svc answers the deduct it made).
                    match &reply.body {
                        Some(ReplyBody::StockDeducted(deducted))
                            if deducted.unit_price_cents >= 0 =>
                        {
                            data.unit_price_cents = Some(deducted.unit_price_cents);
                        }
                        other => {
                            tracing::warn!(body = ?other, "a STOCK_DEDUCT reply without a usable price; asking again");
                            return Verdict::Retry;
                        }
                    }
                }
                data.reserved |= step == Step::OrderReserve;
                return Verdict::Done;
            }
            ReplyOutcome::Refused => reply.reason.as_str(),
            ReplyOutcome::Failed | ReplyOutcome::Unspecified => return Verdict::Retry,
        };
        let cancel = |data: &mut PurchaseData, reason| {
            data.cancel_reason.get_or_insert(reason);
            Verdict::Abort
        };
        match (step, refused) {
            (Step::StockDeduct, "SOLD_OUT") => cancel(data, CancelReason::SoldOut),
            (Step::StockDeduct, "LIMIT_REACHED") => cancel(data, CancelReason::LimitReached),
            (Step::StockDeduct, _) => cancel(data, CancelReason::System),
            // The only way a pending order refuses its reservation: the buyer cancelled it.
            (Step::OrderReserve, _) => cancel(data, CancelReason::UserCancelled),
            (Step::OrderCancel, "ORDER_PAID") => {
                // The payment won: the purchase goes on, undone by nothing.
                data.cancel_reason = None;
                Verdict::PivotPassed
            }
            // The order changed under the command (another change won the compare-and-set
            // first): the same command again finds where it stands.
            (_, "CONFLICT") => Verdict::Retry,
            // A notification that can never be sent does not hold up the purchase.
            (step, _) if step.notifies() => Verdict::Done,
            (step, reason) => Verdict::Park(format!(
                "{} was refused: {reason} ({})",
                step.as_str(),
                reply.detail
            )),
        }
    }

    fn undoing(&self, data: &mut PurchaseData, why: Undo) {
        let reason = match why {
            Undo::DeadlinePassed => CancelReason::PaymentExpired,
            Undo::Requested => CancelReason::UserCancelled,
            Undo::Exhausted | Undo::Operator => CancelReason::System,
        };
        data.cancel_reason.get_or_insert(reason);
    }

    fn undo_reason(&self, data: &PurchaseData) -> Option<&'static str> {
        data.cancel_reason.map(CancelReason::as_str)
    }

    fn announces_compensation(&self, data: &PurchaseData) -> bool {
        data.reserved
    }

    fn command(
        &self,
        data: &PurchaseData,
        deadline: Option<DateTime<Utc>>,
        step: Step,
    ) -> Result<Body, String> {
        let notify = |template: &str| {
            Body::Notify(Notify {
                channels: CHANNELS.map(str::to_owned).to_vec(),
                user_id: data.user_id.clone(),
                template: template.to_owned(),
                channel: String::new(),
            })
        };
        Ok(match step {
            Step::StockDeduct => Body::StockDeduct(StockDeduct {
                tier_id: data.tier_id,
                user_id: data.user_id.clone(),
                quantity: data.quantity,
            }),
            Step::StockConfirm => Body::StockConfirm(StockConfirm {
                tier_id: data.tier_id,
            }),
            Step::StockRollback => Body::StockRollback(StockRollback {
                tier_id: data.tier_id,
            }),
            Step::OrderReserve => Body::OrderReserve(OrderReserve {
                unit_price_cents: data
                    .unit_price_cents
                    .ok_or("ORDER_RESERVE before the deduct gave a price")?,
                expire_at: Some(timestamp(
                    deadline.ok_or("ORDER_RESERVE without a deadline")?,
                )),
            }),
            Step::OrderConfirm => Body::OrderConfirm(OrderConfirm {}),
            Step::OrderCancel => Body::OrderCancel(OrderCancel {
                reason: data
                    .cancel_reason
                    .unwrap_or(CancelReason::System)
                    .as_str()
                    .to_owned(),
            }),
            Step::Notify => notify(CONFIRMED),
            Step::NotifyCancelled => notify(CANCELLED),
            Step::AwaitPayment => return Err("AWAIT_PAYMENT is a wait, not a command".into()),
            retired => return Err(format!("{} is a retired step", retired.as_str())),
        })
    }
}

#[cfg(test)]
#[path = "purchase_tests.rs"]
mod tests;

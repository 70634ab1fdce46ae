//! The saga engine: every event, reply and timer is handled in one transaction that locks the
//! saga's row, records what happened in its log and writes the next command to the outbox (or,
//! over gRPC, hands it to the dispatcher once the transaction committed). A crash at any point
//! resumes from the log: an unanswered step times out and is sent again under the same
//! idempotency key (the order number) with the next attempt number.
//!
//! Replies are deduplicated by (saga, step, attempt); a reply of an attempt that is not the
//! saga's current one is recorded and changes nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use ticket_platform::time::timestamp;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use ticket_platform::messaging::OutgoingMessage;
use ticket_platform::outbox;
use ticket_proto::order::v1::OrderStatus;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{
    Command, Notify, OrderCancel, OrderConfirm, OrderCreated, OrderReserve, Reply, ReplyOutcome,
    StockConfirm, StockDeduct, StockRollback,
};

use super::definition::{
    AWAIT_PAYMENT, ORDER_CANCEL, ORDER_CONFIRM, ORDER_RESERVE, Participant, STOCK_CONFIRM,
    STOCK_DEDUCT, STOCK_ROLLBACK, SagaDefinition, StepKind,
};
use super::log::{self, Saga, Timer, state, timer};
use crate::dispatch::Dispatcher;

/// How long after an order's payment deadline the saga looks at it: covers the difference
/// between the orchestrator's clock and order-svc's database clock.
pub const EXPIRY_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Commands to call over gRPC once the transaction that decided them committed.
type Calls = Vec<(Participant, Command)>;

fn to_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn invalid(what: String) -> DbErr {
    DbErr::Custom(what)
}

#[derive(Clone)]
pub struct Engine {
    db: DatabaseConnection,
    def: Arc<SagaDefinition>,
    dispatcher: Dispatcher,
}

impl Engine {
    pub fn new(db: DatabaseConnection, def: SagaDefinition, dispatcher: Dispatcher) -> Self {
        Self {
            db,
            def: Arc::new(def),
            dispatcher,
        }
    }

    pub fn definition(&self) -> &SagaDefinition {
        &self.def
    }

    /// `ORDER_CREATED`: a new saga, which deducts the stock. A repeated event changes nothing.
    #[tracing::instrument(skip_all, fields(order_no = %created.order_no))]
    pub async fn start(&self, created: &OrderCreated) -> Result<(), DbErr> {
        let now = Utc::now();
        let new = Saga {
            saga_id: uuid::Uuid::now_v7().to_string(),
            order_no: created.order_no.clone(),
            saga_type: self.def.name.to_owned(),
            state: state::RUNNING.to_owned(),
            step: STOCK_DEDUCT.to_owned(),
            attempt: 0,
            attempt_base: 0,
            compensations: String::new(),
            user_id: created.user_id.clone(),
            tier_id: created.tier_id,
            quantity: created.quantity,
            unit_price_cents: None,
            paid: false,
            cancel_reason: None,
            deadline: None,
            incident: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.atomically(async |txn, calls| {
            if let Some(mut saga) = log::insert(txn, &new).await? {
                let first = self.def.forward[0].name;
                self.send(txn, calls, &mut saga, first, 1).await?;
                log::save(txn, &saga).await?;
            }
            Ok(())
        })
        .await
    }

    /// A participant's reply.
    #[tracing::instrument(skip_all, fields(saga_id = %reply.saga_id, step = %reply.step))]
    pub async fn on_reply(&self, reply: &Reply) -> Result<(), DbErr> {
        self.atomically(async |txn, calls| {
            let Some(mut saga) = log::lock(txn, &reply.saga_id).await? else {
                tracing::warn!("a reply for an unknown saga; ignored");
                return Ok(());
            };
            let attempt = i32::try_from(reply.attempt).unwrap_or(i32::MAX);
            let outcome = reply
                .outcome()
                .as_str_name()
                .trim_start_matches("REPLY_OUTCOME_");
            let first = log::record_reply(
                txn,
                &saga.saga_id,
                &reply.step,
                attempt,
                outcome,
                &reply.reason,
                &reply.detail,
            )
            .await?;
            let current = saga.step == reply.step && saga.attempt == attempt;
            let waiting = saga.state == state::RUNNING || saga.state == state::COMPENSATING;
            if first && current && waiting {
                self.advance(txn, calls, &mut saga, reply).await?;
                log::save(txn, &saga).await?;
            }
            Ok(())
        })
        .await
    }

    /// `ORDER_PAID`: past the pivot, the purchase only goes forward.
    #[tracing::instrument(skip_all, fields(order_no))]
    pub async fn on_paid(&self, order_no: &str) -> Result<(), DbErr> {
        self.atomically(async |txn, calls| {
            if let Some(mut saga) = log::lock_by_order(txn, order_no).await?
                && !saga.paid
                && !state::is_final(&saga.state)
            {
                saga.paid = true;
                if saga.state == state::AWAITING_PAYMENT {
                    saga.state = state::RUNNING.to_owned();
                    self.send(txn, calls, &mut saga, STOCK_CONFIRM, 1).await?;
                }
                log::save(txn, &saga).await?;
            }
            Ok(())
        })
        .await
    }

    /// `ORDER_CANCELLED`: the buyer cancelled; the saga gives the stock back. Cancellations the
    /// saga made itself change nothing.
    #[tracing::instrument(skip_all, fields(order_no))]
    pub async fn on_cancelled(&self, order_no: &str, reason: &str) -> Result<(), DbErr> {
        if reason != "USER_CANCELLED" {
            return Ok(());
        }
        self.atomically(async |txn, calls| {
            let Some(mut saga) = log::lock_by_order(txn, order_no).await? else {
                return Ok(());
            };
            if saga.state == state::AWAITING_PAYMENT {
                saga.cancel_reason = Some(reason.to_owned());
                let plan = self.def.compensation_plan(AWAIT_PAYMENT, false);
                self.compensate(txn, calls, &mut saga, &plan).await?;
                log::save(txn, &saga).await?;
            } else if saga.state == state::RUNNING && !saga.paid && saga.cancel_reason.is_none() {
                // Acted on when the pending step answers.
                saga.cancel_reason = Some(reason.to_owned());
                log::save(txn, &saga).await?;
            }
            Ok(())
        })
        .await
    }

    /// Claims and fires due timers; returns how many fired.
    pub async fn fire_due_timers(&self, limit: u64) -> Result<usize, DbErr> {
        self.atomically(async |txn, calls| {
            let due = log::claim_due_timers(txn, limit).await?;
            for timer in &due {
                self.fire(txn, calls, timer).await?;
            }
            Ok(due.len())
        })
        .await
    }

    /// Runs `change` in one transaction, with a list of participant calls it may add to. The
    /// calls are made once the transaction committed: none for a change that failed.
    async fn atomically<T>(
        &self,
        change: impl AsyncFnOnce(&DatabaseTransaction, &mut Calls) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let txn = self.db.begin().await?;
        let mut calls = Calls::new();
        let value = change(&txn, &mut calls).await?;
        txn.commit().await?;
        self.dispatch(calls);
        Ok(value)
    }

    async fn fire(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        timer: &Timer,
    ) -> Result<(), DbErr> {
        let Some(mut saga) = log::lock(txn, &timer.saga_id).await? else {
            return Ok(());
        };
        let at_step = saga.step == timer.step;
        let waiting = saga.state == state::RUNNING || saga.state == state::COMPENSATING;
        match timer.kind.as_str() {
            timer::STEP_TIMEOUT if at_step && waiting && saga.attempt == timer.attempt => {
                tracing::warn!(saga_id = %saga.saga_id, step = %saga.step, attempt = saga.attempt, "step timed out");
                self.retry_later(txn, calls, &mut saga).await?;
            }
            timer::RETRY if at_step && waiting && saga.attempt + 1 == timer.attempt => {
                let step = saga.step.clone();
                self.send(txn, calls, &mut saga, &step, timer.attempt)
                    .await?;
            }
            timer::PAYMENT_DEADLINE if saga.state == state::AWAITING_PAYMENT && !saga.paid => {
                // order-svc refuses a payment after the deadline, so once it is past (with a
                // margin for clocks) the order's status is settled: paid before the deadline,
                // or never. Its status decides; the stock returns only for an unpaid order.
                match self.dispatcher.order_status(&saga.order_no).await {
                    Ok(OrderStatus::Paid | OrderStatus::Confirmed) => {
                        saga.paid = true;
                        saga.state = state::RUNNING.to_owned();
                        self.send(txn, calls, &mut saga, STOCK_CONFIRM, 1).await?;
                    }
                    Ok(_) => {
                        saga.cancel_reason = Some("PAYMENT_EXPIRED".to_owned());
                        let plan = self.def.compensation_plan(AWAIT_PAYMENT, false);
                        self.compensate(txn, calls, &mut saga, &plan).await?;
                    }
                    Err(err) => {
                        tracing::warn!(saga_id = %saga.saga_id, error = %err, "cannot read the order at its deadline; trying again");
                        return log::add_timer(
                            txn,
                            &saga.saga_id,
                            timer::PAYMENT_DEADLINE,
                            &timer.step,
                            timer.attempt,
                            Utc::now() + chrono::Duration::seconds(1),
                        )
                        .await;
                    }
                }
            }
            _ => return Ok(()),
        }
        log::save(txn, &saga).await
    }

    /// A step that failed for a passing reason or timed out: the next attempt after a backoff,
    /// or, when its budget is spent, compensation (before the pivot) or parking (after).
    async fn retry_later(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
    ) -> Result<(), DbErr> {
        let spec = self
            .def
            .step(&saga.step)
            .ok_or_else(|| invalid(format!("unknown step {}", saga.step)))?;
        let next = saga.attempt + 1;
        let counted = next - saga.attempt_base;
        if u32::try_from(counted).unwrap_or(u32::MAX) <= spec.retry.max_attempts {
            let wait = spec
                .retry
                .backoff_before(u32::try_from(next).unwrap_or(u32::MAX));
            return log::add_timer(
                txn,
                &saga.saga_id,
                timer::RETRY,
                &saga.step,
                next,
                Utc::now() + to_duration(wait),
            )
            .await;
        }
        let step = saga.step.clone();
        if saga.state == state::COMPENSATING || self.def.after_pivot(&step) {
            park(
                saga,
                format!("{step} did not succeed in {} attempts", saga.attempt),
            );
            return Ok(());
        }
        saga.cancel_reason
            .get_or_insert_with(|| "SYSTEM".to_owned());
        let plan = self.def.compensation_plan(&step, true);
        self.compensate(txn, calls, saga, &plan).await
    }

    async fn advance(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
        reply: &Reply,
    ) -> Result<(), DbErr> {
        let outcome = reply.outcome();
        if outcome != ReplyOutcome::Ok && outcome != ReplyOutcome::Refused {
            return self.retry_later(txn, calls, saga).await;
        }
        let ok = outcome == ReplyOutcome::Ok;
        let step = reply.step.as_str();
        if saga.state == state::COMPENSATING {
            if ok {
                return self.next_compensation(txn, calls, saga).await;
            }
            if step == ORDER_CANCEL
                && reply.reason == "ORDER_PAID"
                && saga.cancel_reason.as_deref() == Some("PAYMENT_EXPIRED")
            {
                // Payment won the race with the deadline: the purchase goes on.
                saga.paid = true;
                saga.cancel_reason = None;
                saga.compensations.clear();
                saga.state = state::RUNNING.to_owned();
                return self.send(txn, calls, saga, STOCK_CONFIRM, 1).await;
            }
            park(
                saga,
                format!("{step} was refused: {} ({})", reply.reason, reply.detail),
            );
            return Ok(());
        }
        match (step, ok) {
            (STOCK_DEDUCT, true) => {
                if let Some(ReplyBody::StockDeducted(deducted)) = &reply.body {
                    saga.unit_price_cents = Some(deducted.unit_price_cents);
                }
                if saga.cancel_reason.is_some() {
                    let plan = self.def.compensation_plan(STOCK_DEDUCT, true);
                    return self.compensate(txn, calls, saga, &plan).await;
                }
                self.forward(txn, calls, saga, step).await
            }
            (STOCK_DEDUCT, false) => {
                let reason = match reply.reason.as_str() {
                    "SOLD_OUT" | "LIMIT_REACHED" => reply.reason.clone(),
                    _ => "SYSTEM".to_owned(),
                };
                saga.cancel_reason.get_or_insert(reason);
                let plan = self.def.compensation_plan(STOCK_DEDUCT, false);
                self.compensate(txn, calls, saga, &plan).await
            }
            (ORDER_RESERVE, true) if saga.paid => {
                self.send(txn, calls, saga, STOCK_CONFIRM, 1).await
            }
            (ORDER_RESERVE, true) if saga.cancel_reason.is_some() => {
                let plan = self.def.compensation_plan(AWAIT_PAYMENT, false);
                self.compensate(txn, calls, saga, &plan).await
            }
            (ORDER_RESERVE, false) => {
                saga.cancel_reason
                    .get_or_insert_with(|| "USER_CANCELLED".to_owned());
                let plan = self.def.compensation_plan(ORDER_RESERVE, false);
                self.compensate(txn, calls, saga, &plan).await
            }
            (ORDER_CONFIRM, true) => self.complete(txn, calls, saga).await,
            (_, true) => self.forward(txn, calls, saga, step).await,
            (_, false) => {
                park(
                    saga,
                    format!("{step} was refused: {} ({})", reply.reason, reply.detail),
                );
                Ok(())
            }
        }
    }

    /// The forward step after `done`: a command, or the wait for payment.
    async fn forward(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
        done: &str,
    ) -> Result<(), DbErr> {
        let Some(next) = self.def.next(done) else {
            return self.complete(txn, calls, saga).await;
        };
        match next.kind {
            StepKind::Command(_) => {
                let name = next.name;
                self.send(txn, calls, saga, name, 1).await
            }
            StepKind::Wait => {
                saga.state = state::AWAITING_PAYMENT.to_owned();
                saga.step = next.name.to_owned();
                saga.attempt = 1;
                let deadline = saga.deadline.unwrap_or_else(Utc::now) + to_duration(EXPIRY_MARGIN);
                log::add_timer(
                    txn,
                    &saga.saga_id,
                    timer::PAYMENT_DEADLINE,
                    next.name,
                    1,
                    deadline,
                )
                .await
            }
        }
    }

    async fn compensate(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
        plan: &[&'static str],
    ) -> Result<(), DbErr> {
        let Some((first, rest)) = plan.split_first() else {
            saga.state = state::COMPENSATED.to_owned();
            return Ok(());
        };
        saga.state = state::COMPENSATING.to_owned();
        saga.compensations = rest.join(",");
        self.send(txn, calls, saga, first, 1).await
    }

    async fn next_compensation(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
    ) -> Result<(), DbErr> {
        let remaining: Vec<String> = saga
            .compensations
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let Some((next, rest)) = remaining.split_first() else {
            saga.state = state::COMPENSATED.to_owned();
            return Ok(());
        };
        saga.compensations = rest.join(",");
        let next = next.clone();
        self.send(txn, calls, saga, &next, 1).await
    }

    /// The purchase is done; the buyer is told on every channel (a failed notification never
    /// undoes the purchase).
    async fn complete(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
    ) -> Result<(), DbErr> {
        saga.state = state::COMPLETED.to_owned();
        for channel in self.def.notifications.clone() {
            let step = format!("NOTIFY_{channel}");
            let command = Command {
                saga_id: saga.saga_id.clone(),
                order_no: saga.order_no.clone(),
                step: step.clone(),
                attempt: 1,
                body: Some(Body::Notify(Notify {
                    channel: channel.to_owned(),
                    user_id: saga.user_id.clone(),
                    template: "purchase_confirmed".into(),
                })),
            };
            log::record_sent(
                txn,
                &saga.saga_id,
                &step,
                1,
                &describe(&command),
                self.dispatcher.transport_name(),
            )
            .await?;
            self.deliver(txn, calls, Participant::Notify, channel, command)
                .await?;
        }
        Ok(())
    }

    /// Writes a step's command, its history row and its timeout, and moves the saga to it.
    async fn send(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        saga: &mut Saga,
        step: &str,
        attempt: i32,
    ) -> Result<(), DbErr> {
        let spec = self
            .def
            .step(step)
            .ok_or_else(|| invalid(format!("unknown step {step}")))?;
        let StepKind::Command(participant) = spec.kind else {
            return Err(invalid(format!("{step} is not a command")));
        };
        if step == ORDER_RESERVE && saga.deadline.is_none() {
            // Set once: a retried reserve keeps the same deadline.
            let window = self.def.forward.iter().find(|s| s.kind == StepKind::Wait);
            let window = window.map_or(std::time::Duration::ZERO, |s| s.timeout);
            saga.deadline = Some(Utc::now() + to_duration(window));
        }
        saga.step = step.to_owned();
        saga.attempt = attempt;
        let command = self.command(saga, step, attempt)?;
        log::record_sent(
            txn,
            &saga.saga_id,
            step,
            attempt,
            &describe(&command),
            self.dispatcher.transport_name(),
        )
        .await?;
        log::add_timer(
            txn,
            &saga.saga_id,
            timer::STEP_TIMEOUT,
            step,
            attempt,
            Utc::now() + to_duration(spec.timeout),
        )
        .await?;
        self.deliver(txn, calls, participant, step, command).await
    }

    async fn deliver(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        participant: Participant,
        tag: &str,
        command: Command,
    ) -> Result<(), DbErr> {
        if self.dispatcher.over_grpc() {
            calls.push((participant, command));
            return Ok(());
        }
        let message = OutgoingMessage::new(participant.topic(), tag, &command.order_no, &command)
            .with_saga(&command.saga_id, &command.step, command.attempt);
        outbox::enqueue(txn, &[message]).await
    }

    fn command(&self, saga: &Saga, step: &str, attempt: i32) -> Result<Command, DbErr> {
        let body = match step {
            STOCK_DEDUCT => Body::StockDeduct(StockDeduct {
                tier_id: saga.tier_id,
                user_id: saga.user_id.clone(),
                quantity: saga.quantity,
            }),
            STOCK_CONFIRM => Body::StockConfirm(StockConfirm {
                tier_id: saga.tier_id,
            }),
            STOCK_ROLLBACK => Body::StockRollback(StockRollback {
                tier_id: saga.tier_id,
            }),
            ORDER_RESERVE => Body::OrderReserve(OrderReserve {
                unit_price_cents: saga.unit_price_cents.unwrap_or_default(),
                expire_at: saga.deadline.map(timestamp),
            }),
            ORDER_CONFIRM => Body::OrderConfirm(OrderConfirm {}),
            ORDER_CANCEL => Body::OrderCancel(OrderCancel {
                reason: saga
                    .cancel_reason
                    .clone()
                    .unwrap_or_else(|| "SYSTEM".to_owned()),
            }),
            other => return Err(invalid(format!("no command for step {other}"))),
        };
        Ok(Command {
            saga_id: saga.saga_id.clone(),
            order_no: saga.order_no.clone(),
            step: step.to_owned(),
            attempt: u32::try_from(attempt).unwrap_or(0),
            body: Some(body),
        })
    }

    /// Calls the participants of committed commands over gRPC; their replies are handled like
    /// replies from RocketMQ. A call that fails is retried by its step's timeout.
    fn dispatch(&self, calls: Calls) {
        for (participant, command) in calls {
            let engine = self.clone();
            tokio::spawn(engine.call(participant, command));
        }
    }

    fn call(
        self,
        participant: Participant,
        command: Command,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(async move {
            match self.dispatcher.execute(participant, command).await {
                Ok(reply) => {
                    if let Err(err) = self.on_reply(&reply).await {
                        tracing::warn!(error = %err, "a gRPC reply could not be recorded; the step will time out and retry");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "a participant call failed; the step will time out and retry");
                }
            }
        })
    }

    /// An operator's retry of a parked saga: its current step again, with a fresh budget.
    pub async fn retry(&self, saga_id: &str) -> Result<Option<Saga>, DbErr> {
        let exists = self
            .atomically(async |txn, calls| {
                let Some(mut saga) = log::lock(txn, saga_id).await? else {
                    return Ok(false);
                };
                if saga.state == state::PARKED {
                    saga.incident = None;
                    saga.state = if self.def.is_compensation(&saga.step) {
                        state::COMPENSATING
                    } else {
                        state::RUNNING
                    }
                    .to_owned();
                    let step = saga.step.clone();
                    let attempt = saga.attempt + 1;
                    self.send(txn, calls, &mut saga, &step, attempt).await?;
                    log::save(txn, &saga).await?;
                }
                Ok(true)
            })
            .await?;
        if !exists {
            return Ok(None);
        }
        log::find(&self.db, saga_id, false).await
    }

    /// An operator's compensation of a saga that has not passed the pivot.
    pub async fn compensate_now(&self, saga_id: &str) -> Result<Result<Saga, String>, DbErr> {
        let refused = self
            .atomically(async |txn, calls| {
                let Some(mut saga) = log::lock(txn, saga_id).await? else {
                    return Ok(Some(format!("saga {saga_id} does not exist")));
                };
                if saga.paid || state::is_final(&saga.state) || saga.state == state::COMPENSATING {
                    return Ok(Some(format!(
                        "saga {saga_id} is {} (paid: {}); only an unpaid saga that is not finished can be compensated",
                        saga.state, saga.paid
                    )));
                }
                saga.cancel_reason
                    .get_or_insert_with(|| "SYSTEM".to_owned());
                saga.incident = None;
                let at = if saga.state == state::AWAITING_PAYMENT {
                    AWAIT_PAYMENT.to_owned()
                } else {
                    saga.step.clone()
                };
                let plan = self.def.compensation_plan(&at, at != AWAIT_PAYMENT);
                self.compensate(txn, calls, &mut saga, &plan).await?;
                log::save(txn, &saga).await?;
                Ok(None)
            })
            .await?;
        if let Some(refused) = refused {
            return Ok(Err(refused));
        }
        Ok(log::find(&self.db, saga_id, false)
            .await?
            .ok_or_else(|| format!("saga {saga_id} does not exist")))
    }
}

fn park(saga: &mut Saga, incident: String) {
    tracing::error!(saga_id = %saga.saga_id, order_no = %saga.order_no, %incident, "saga parked for an operator");
    saga.state = state::PARKED.to_owned();
    saga.incident = Some(incident);
}

/// A command in a line, for the step history.
fn describe(command: &Command) -> String {
    match &command.body {
        Some(body) => format!("{body:?}"),
        None => "(no body)".into(),
    }
}

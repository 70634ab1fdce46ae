//! The saga engine: runs sagas of one declared type. Every event, reply, timer and operator
//! action is one transaction that locks the saga's row, runs the step machine, records what
//! happened in the log and writes the commands it decided to the outbox (or, over gRPC, hands
//! them to the dispatcher once the transaction committed: no network call is made while the
//! row is locked). A crash at any point resumes from the log: an unanswered step times out and
//! is sent again under the same idempotency key (the order number) with the next attempt.
//!
//! Replies are deduplicated by (saga, step, attempt); a reply of an attempt that is not the
//! saga's current one is recorded and changes nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use ticket_platform::messaging::OutgoingMessage;
use ticket_platform::outbox;
use ticket_proto::saga::v1::{Command, Reply};

use super::definition::{SagaType, StepKind, StepName};
use super::log::{self, Action, SagaRow};
use super::machine::{Effect, Machine, Refused, Saga, Signal, State};
use crate::dispatch::{Calls, Dispatcher};
use crate::error::Error;

mod row;
mod timers;

type SagaOf<T> = Saga<<T as SagaType>::Step, <T as SagaType>::Data>;

/// Runs sagas of type `T`; cheap to clone.
pub struct Engine<T: SagaType> {
    inner: Arc<Inner<T>>,
}

impl<T: SagaType> Clone for Engine<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<T> {
    db: DatabaseConnection,
    saga_type: T,
    dispatcher: Dispatcher,
    /// This replica's name in the timers it claims and fires.
    replica: String,
}

/// What an operator asks of a saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    Retry,
    Compensate,
    Skip,
}

impl<T: SagaType> Engine<T> {
    pub fn new(db: DatabaseConnection, saga_type: T, dispatcher: Dispatcher) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                saga_type,
                dispatcher,
                replica: uuid::Uuid::now_v7().to_string(),
            }),
        }
    }

    pub fn saga_type(&self) -> &T {
        &self.inner.saga_type
    }

    /// This replica's name (in the timers it fires).
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// A new saga for `order_no`; a repeated start changes nothing.
    #[tracing::instrument(skip_all, fields(order_no))]
    pub async fn start(&self, order_no: &str, data: T::Data) -> Result<(), Error> {
        tracing::Span::current().record("order_no", order_no);
        let first = self
            .saga_type()
            .declaration()
            .forward
            .first()
            .ok_or_else(|| Error::Corrupt("the saga type declares no step".into()))?
            .name;
        let now = Utc::now();
        let new = SagaRow {
            saga_id: uuid::Uuid::now_v7().to_string(),
            order_no: order_no.to_owned(),
            saga_type: self.saga_type().declaration().name.to_owned(),
            state: State::Running.as_str().to_owned(),
            step: first.as_str().to_owned(),
            attempt: 0,
            attempt_base: 0,
            compensations: serde_json::json!([]),
            passed_pivot: false,
            abort_requested: false,
            deadline: None,
            incident: None,
            data: serde_json::to_value(&data)
                .map_err(|err| Error::Corrupt(format!("saga data: {err}")))?,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.atomically(async |txn, calls| {
            if let Some(row) = log::insert(txn, &new).await? {
                let mut saga = row::read::<T>(&row)?;
                let mut machine = Machine::new(self.saga_type(), Utc::now());
                machine.start(&mut saga);
                self.write(txn, calls, row, saga, machine.effects).await?;
            }
            Ok(())
        })
        .await
    }

    /// A participant's reply.
    #[tracing::instrument(skip_all, fields(saga_id = %reply.saga_id, step = %reply.step))]
    pub async fn on_reply(&self, reply: &Reply) -> Result<(), Error> {
        self.atomically(async |txn, calls| {
            let Some(row) = log::lock(txn, &reply.saga_id).await? else {
                tracing::warn!("a reply for an unknown saga; ignored");
                return Ok(());
            };
            if row.saga_type != self.saga_type().declaration().name {
                return Ok(());
            }
            let attempt = i32::try_from(reply.attempt).unwrap_or(i32::MAX);
            let outcome = reply
                .outcome()
                .as_str_name()
                .trim_start_matches("REPLY_OUTCOME_");
            let first = log::record_reply(
                txn,
                &row.saga_id,
                &reply.step,
                attempt,
                outcome,
                &reply.reason,
                &reply.detail,
            )
            .await?;
            let mut saga = row::read::<T>(&row)?;
            let current = saga.step.as_str() == reply.step && saga.attempt == attempt;
            let awaited = matches!(saga.state, State::Running | State::Compensating);
            if first && current && awaited {
                let mut machine = Machine::new(self.saga_type(), Utc::now());
                machine.reply(&mut saga, reply);
                self.write(txn, calls, row, saga, machine.effects).await?;
            }
            Ok(())
        })
        .await
    }

    /// A business event for the saga of `order_no`.
    #[tracing::instrument(skip_all, fields(order_no))]
    pub async fn signal(&self, order_no: &str, signal: Signal) -> Result<(), Error> {
        tracing::Span::current().record("order_no", order_no);
        self.atomically(async |txn, calls| {
            let Some(row) = log::lock_by_order(txn, order_no).await? else {
                return Ok(());
            };
            let mut saga = row::read::<T>(&row)?;
            let mut machine = Machine::new(self.saga_type(), Utc::now());
            if machine.signal(&mut saga, signal) {
                self.write(txn, calls, row, saga, machine.effects).await?;
            }
            Ok(())
        })
        .await
    }

    /// An operator's action on a saga, recorded in its history with `reason`. `Ok(Err)` when
    /// the saga's state does not allow it.
    #[tracing::instrument(skip(self))]
    pub async fn operate(
        &self,
        saga_id: &str,
        action: OperatorAction,
        reason: &str,
    ) -> Result<Result<(), Refused>, Error> {
        self.atomically(async |txn, calls| {
            let Some(row) = log::lock(txn, saga_id).await? else {
                return Err(Error::NotFound(format!("saga {saga_id} does not exist")));
            };
            let mut saga = row::read::<T>(&row)?;
            let step = saga.step.as_str();
            let mut machine = Machine::new(self.saga_type(), Utc::now());
            let (done, recorded) = match action {
                OperatorAction::Retry => (machine.retry(&mut saga), Action::Retry),
                OperatorAction::Compensate => {
                    (machine.compensate_now(&mut saga), Action::Compensate)
                }
                OperatorAction::Skip => (machine.skip(&mut saga), Action::Skip),
            };
            if let Err(refused) = done {
                return Ok(Err(refused));
            }
            log::record_action(txn, saga_id, recorded, step, reason).await?;
            tracing::warn!(
                saga_id,
                step,
                action = recorded.as_str(),
                reason,
                "operator action"
            );
            self.write(txn, calls, row, saga, machine.effects).await?;
            Ok(Ok(()))
        })
        .await
    }

    /// Runs `change` in one transaction, with a list of participant calls it may add to. The
    /// calls are made once the transaction committed: none for a change that failed.
    async fn atomically<R>(
        &self,
        change: impl AsyncFnOnce(&DatabaseTransaction, &mut Calls) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let asked = std::time::Instant::now();
        let txn = self.inner.db.begin().await?;
        tracing::debug!(
            begin_ms = asked.elapsed().as_secs_f64() * 1000.0,
            "saga transaction begun"
        );
        let mut calls = Calls::new();
        let value = change(&txn, &mut calls).await?;
        txn.commit().await?;
        if !calls.is_empty() {
            let engine = self.clone();
            self.inner
                .dispatcher
                .fan_out(calls, move |reply| engine.clone().reply_later(reply));
        }
        Ok(value)
    }

    /// [`Engine::on_reply`] for a reply that arrives over gRPC after the commit (boxed: the
    /// call is made from within the engine's own transaction frame).
    pub fn reply_later(
        self,
        reply: Reply,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move { self.on_reply(&reply).await.map_err(|err| err.to_string()) })
    }

    /// A reply to a command the outbox handed over over gRPC (the broker did not take it): the
    /// step's history says how it travelled, then the reply is handled like any other.
    pub fn handed_over_reply(
        self,
        command: Command,
        reply: Reply,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move {
            let attempt = i32::try_from(command.attempt).unwrap_or(i32::MAX);
            log::record_transport(
                &self.inner.db,
                &command.saga_id,
                &command.step,
                attempt,
                "grpc (handed over)",
            )
            .await
            .map_err(|err| err.to_string())?;
            self.on_reply(&reply).await.map_err(|err| err.to_string())
        })
    }

    /// Saves the saga and carries out the machine's effects, in `txn`.
    async fn write(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        mut row: SagaRow,
        saga: SagaOf<T>,
        effects: Vec<Effect<T::Step>>,
    ) -> Result<(), Error> {
        if saga.state == State::Parked && row.state != State::Parked.as_str() {
            tracing::error!(saga_id = %row.saga_id, order_no = %row.order_no, incident = ?saga.incident, "saga parked for an operator");
        }
        for effect in effects {
            match effect {
                Effect::Send { step, attempt } => {
                    self.send(txn, calls, &row, &saga, step, attempt).await?;
                }
                Effect::Announce { step } => self.send(txn, calls, &row, &saga, step, 1).await?,
                Effect::Timer {
                    kind,
                    step,
                    attempt,
                    due,
                } => {
                    log::add_timer(
                        txn,
                        &row.saga_id,
                        kind.as_str(),
                        step.as_str(),
                        attempt,
                        due,
                    )
                    .await?;
                }
            }
        }
        row::apply::<T>(&mut row, &saga)?;
        log::save(txn, &row).await?;
        Ok(())
    }

    /// Records a step's command in the history and sends it: to the outbox, or to the calls
    /// made over gRPC after the commit.
    async fn send(
        &self,
        txn: &DatabaseTransaction,
        calls: &mut Calls,
        row: &SagaRow,
        saga: &SagaOf<T>,
        step: T::Step,
        attempt: i32,
    ) -> Result<(), Error> {
        let spec = self
            .saga_type()
            .declaration()
            .step(step)
            .ok_or_else(|| Error::Corrupt(format!("{} is not declared", step.as_str())))?;
        let StepKind::Command { participant, tag } = spec.kind else {
            return Err(Error::Corrupt(format!(
                "{} is not a command",
                step.as_str()
            )));
        };
        let body = self
            .saga_type()
            .command(&saga.data, saga.deadline, step)
            .map_err(Error::Corrupt)?;
        let command = Command {
            saga_id: row.saga_id.clone(),
            order_no: row.order_no.clone(),
            step: step.as_str().to_owned(),
            attempt: u32::try_from(attempt).unwrap_or(0),
            body: Some(body),
        };
        let dispatcher = &self.inner.dispatcher;
        log::record_sent(
            txn,
            &row.saga_id,
            step.as_str(),
            attempt,
            &describe(&command),
            dispatcher.transport_name(),
        )
        .await?;
        if dispatcher.over_grpc() {
            calls.push((participant, command));
            return Ok(());
        }
        let message = OutgoingMessage::new(participant.topic(), tag, &command.order_no, &command)
            .with_saga(&command.saga_id, &command.step, command.attempt);
        outbox::enqueue(txn, &[message]).await?;
        Ok(())
    }
}

/// A command in a line, for the step history.
fn describe(command: &Command) -> String {
    match &command.body {
        Some(body) => format!("{body:?}"),
        None => "(no body)".into(),
    }
}

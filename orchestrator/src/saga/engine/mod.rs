//! The saga engine: runs sagas of one declared type. Every change is one transaction that
//! locks the sagas it moves, runs the step machine on each, records what happened in the log
//! and writes the commands it decided to the outbox (or, over gRPC, hands them to the
//! dispatcher once the transaction committed: no network call is made while a row is locked).
//! New sagas and replies come in batches (`intake`: one transaction for all the orders or
//! replies the consumers hold at once); a timer, a signal and an operator's action move one
//! saga. A crash at any point resumes from the log: an unanswered step times out and is sent
//! again under the same idempotency key (the order number) with the next attempt.
//!
//! Replies are deduplicated by (saga, step, attempt); a reply of an attempt that is not the
//! saga's current one is recorded and changes nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use ticket_platform::messaging::OutgoingMessage;
use ticket_proto::saga::v1::{Command, Reply};

use super::definition::{SagaType, StepKind, StepName};
use super::log::{self, Action, NewTimer, SagaRow, Sent};
use super::machine::{Effect, Machine, Refused, Saga, State};
use super::metrics::SagaMetrics;
use crate::dispatch::Dispatcher;
use crate::error::Error;

mod intake;
mod pending;
mod row;
mod timers;

pub use intake::Results;
use pending::Pending;

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
    metrics: SagaMetrics,
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
                metrics: SagaMetrics::default(),
            }),
        }
    }

    /// What the engine counts (registered by the service).
    pub fn metrics(&self) -> &SagaMetrics {
        &self.inner.metrics
    }

    pub fn saga_type(&self) -> &T {
        &self.inner.saga_type
    }

    /// This replica's name (in the timers it fires).
    pub fn replica(&self) -> &str {
        &self.inner.replica
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
        self.atomically(async |txn, pending| {
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
            self.write(pending, row, saga, machine.effects)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Runs `change` in one transaction, then writes what it gathered in its [`Pending`] and
    /// commits. The participant calls it gathered are made once the transaction committed:
    /// none for a change that failed.
    async fn atomically<R>(
        &self,
        change: impl AsyncFnOnce(&DatabaseTransaction, &mut Pending) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let asked = std::time::Instant::now();
        let txn = self.inner.db.begin().await?;
        tracing::debug!(
            begin_ms = asked.elapsed().as_secs_f64() * 1000.0,
            "saga transaction begun"
        );
        let mut pending = Pending::default();
        let value = change(&txn, &mut pending).await?;
        let announces = !pending.messages.is_empty();
        pending.write(&txn, self.replica()).await?;
        txn.commit().await?;
        if announces {
            ticket_platform::outbox::committed();
        }
        std::mem::take(&mut pending.outcomes)
            .count(&self.inner.metrics, self.saga_type().declaration().name);
        let calls = pending.calls;
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

    /// Gathers the saga's new row and the machine's effects in `pending`.
    fn write(
        &self,
        pending: &mut Pending,
        mut row: SagaRow,
        saga: SagaOf<T>,
        effects: Vec<Effect<T::Step>>,
    ) -> Result<(), Error> {
        if saga.state == State::Parked && row.state != State::Parked.as_str() {
            tracing::error!(saga_id = %row.saga_id, order_no = %row.order_no, incident = ?saga.incident, "saga parked for an operator");
        }
        if matches!(
            saga.state,
            State::Completed | State::Compensated | State::Parked
        ) && row.state != saga.state.as_str()
        {
            let reason = match saga.state {
                State::Completed => "none",
                _ => self.saga_type().undo_reason(&saga.data).unwrap_or("none"),
            };
            let took = (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64();
            pending
                .outcomes
                .ended
                .push((saga.state.as_str(), reason, took));
        }
        for effect in effects {
            match effect {
                Effect::Send { step, attempt } => {
                    self.send(pending, &row, &saga, (step, attempt), false)?;
                }
                Effect::Announce { step } => self.send(pending, &row, &saga, (step, 1), true)?,
                Effect::Timer {
                    kind,
                    step,
                    attempt,
                    due,
                } => pending.timers.push(NewTimer {
                    saga_id: row.saga_id.clone(),
                    kind: kind.as_str().to_owned(),
                    step: step.as_str().to_owned(),
                    attempt,
                    due_at: due,
                }),
            }
        }
        row::apply::<T>(&mut row, &saga)?;
        pending.sagas.push(row);
        Ok(())
    }

    /// Records a step's command in the history and sends it: to the outbox, or to the calls
    /// made over gRPC after the commit. An announced command (no timeout retries it) goes to
    /// the outbox whenever there is one, even while the broker is down: the outbox's handover
    /// delivers it over gRPC, round after round until it is taken, and the relay publishes it
    /// once the broker is back (the participant absorbs the second copy).
    fn send(
        &self,
        pending: &mut Pending,
        row: &SagaRow,
        saga: &SagaOf<T>,
        (step, attempt): (T::Step, i32),
        announced: bool,
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
        // The command continues its saga's trace, in a span of its own.
        let span = ticket_platform::telemetry::continuing(
            tracing::info_span!(
                "saga command",
                saga_id = %command.saga_id,
                order_no = %command.order_no,
                step = %command.step,
                attempt = command.attempt
            ),
            row.traceparent.as_deref(),
        );
        let dispatcher = &self.inner.dispatcher;
        let over_grpc = dispatcher.over_grpc() && !(announced && dispatcher.has_outbox());
        pending.sent.push(Sent {
            saga_id: row.saga_id.clone(),
            step: step.as_str().to_owned(),
            attempt,
            command: describe(&command),
            transport: if over_grpc { "grpc" } else { "rocketmq" }.to_owned(),
        });
        if over_grpc {
            pending.calls.push((participant, command, span));
            return Ok(());
        }
        let message = OutgoingMessage::new(participant.topic(), tag, &command.order_no, &command)
            .with_saga(&command.saga_id, &command.step, command.attempt)
            .with_traceparent(ticket_platform::telemetry::traceparent_of(&span));
        // A message the broker would refuse fails this saga alone, not the transaction.
        message
            .validate()
            .map_err(|err| Error::Corrupt(format!("{}: {err}", step.as_str())))?;
        pending.messages.push(message);
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

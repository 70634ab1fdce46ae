//! New sagas, participants' replies and business signals, many in one transaction: a batch of
//! orders is inserted with one statement, a batch of replies or signals locks its sagas with
//! one, and what the machine
//! decided for all of them is written with one statement per table. Each saga is moved on its
//! own first (pure): one the engine cannot act on fails its own items, not the batch.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use ticket_proto::saga::v1::Reply;

use super::pending::Pending;
use super::{Engine, row};
use crate::error::Error;
use crate::saga::definition::{SagaType, StepName};
use crate::saga::log::{self, Answer, SagaRow, StepKey};
use crate::saga::machine::{Machine, Signal, State};

/// One result per item of a batch, in the batch's order.
pub type Results = ticket_platform::group_commit::Results<Error>;

impl<T: SagaType> Engine<T> {
    /// A new saga for `order_no`; a repeated start changes nothing.
    #[tracing::instrument(skip_all, fields(order_no))]
    pub async fn start(&self, order_no: &str, data: T::Data) -> Result<(), Error> {
        tracing::Span::current().record("order_no", order_no);
        let mut results = self.start_many(vec![(order_no.to_owned(), data)]).await?;
        results.pop().unwrap_or(Ok(()))
    }

    /// A new saga for each order, in one transaction, each in the current span's trace; an
    /// order that has a saga already changes nothing.
    pub async fn start_many(&self, orders: Vec<(String, T::Data)>) -> Result<Results, Error> {
        let traceparent = ticket_platform::telemetry::current_traceparent();
        self.start_traced(
            orders
                .into_iter()
                .map(|(order_no, data)| (order_no, data, traceparent.clone()))
                .collect(),
        )
        .await
    }

    /// [`Engine::start_many`], each saga continuing the trace of its own `traceparent` (the
    /// event that asked for it).
    pub async fn start_traced(
        &self,
        orders: Vec<(String, T::Data, Option<String>)>,
    ) -> Result<Results, Error> {
        let first = self
            .saga_type()
            .declaration()
            .forward
            .first()
            .ok_or_else(|| Error::Corrupt("the saga type declares no step".into()))?
            .name;
        let mut results: Results = Vec::with_capacity(orders.len());
        let mut started: HashMap<String, Pending> = HashMap::new();
        let mut new = Vec::new();
        for (order_no, data, traceparent) in orders {
            if started.contains_key(&order_no) {
                // The same order twice in one batch: its first start stands.
                results.push(Ok(()));
                continue;
            }
            match self.first_step(first, &order_no, &data, traceparent) {
                Ok((row, pending)) => {
                    started.insert(order_no, pending);
                    new.push(row);
                    results.push(Ok(()));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        self.atomically(async |txn, pending| {
            for inserted in log::insert(txn, &new).await? {
                if let Some(own) = started.remove(&inserted.order_no) {
                    pending.append(own);
                    pending.outcomes.started += 1;
                }
            }
            Ok(results)
        })
        .await
    }

    /// A new saga's row and what its first step writes.
    fn first_step(
        &self,
        first: T::Step,
        order_no: &str,
        data: &T::Data,
        traceparent: Option<String>,
    ) -> Result<(SagaRow, Pending), Error> {
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
            data: serde_json::to_value(data)
                .map_err(|err| Error::Corrupt(format!("saga data: {err}")))?,
            version: 1,
            traceparent,
            created_at: now,
            updated_at: now,
        };
        let mut saga = row::read::<T>(&new)?;
        let mut machine = Machine::new(self.saga_type(), now);
        machine.start(&mut saga);
        let mut pending = Pending::default();
        self.write(&mut pending, new.clone(), saga, machine.effects)?;
        Ok((new, pending))
    }

    /// A participant's reply.
    #[tracing::instrument(skip_all, fields(saga_id = %reply.saga_id, step = %reply.step))]
    pub async fn on_reply(&self, reply: &Reply) -> Result<(), Error> {
        let mut results = self.on_replies(std::slice::from_ref(reply)).await?;
        results.pop().unwrap_or(Ok(()))
    }

    /// Participants' replies, in one transaction. A reply is recorded in its step's history
    /// the first time it arrives; it moves its saga when it answers the saga's current step
    /// and attempt. A reply for an unknown saga is ignored.
    pub async fn on_replies(&self, replies: &[Reply]) -> Result<Results, Error> {
        let mut ids: Vec<&str> = replies.iter().map(|r| r.saga_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        self.atomically(async |txn, pending| {
            let name = self.saga_type().declaration().name;
            let rows = log::lock_many(txn, &ids).await?;
            let known: HashSet<&str> = rows.iter().map(|r| r.saga_id.as_str()).collect();
            for reply in replies.iter().filter(|r| !known.contains(r.saga_id.as_str())) {
                tracing::warn!(saga_id = %reply.saga_id, step = %reply.step, "a reply for an unknown saga; ignored");
            }
            let rows: Vec<SagaRow> = rows.into_iter().filter(|r| r.saga_type == name).collect();
            let ours: HashSet<&str> = rows.iter().map(|r| r.saga_id.as_str()).collect();
            let keys: Vec<StepKey> = replies
                .iter()
                .filter(|r| ours.contains(r.saga_id.as_str()))
                .map(step_key)
                .collect();
            let mut unanswered = log::unanswered(txn, &keys).await?;
            let mut results: Results = replies.iter().map(|_| Ok(())).collect();
            let mut answers = Vec::new();
            for row in rows {
                let mine: Vec<usize> = (0..replies.len())
                    .filter(|&i| replies[i].saga_id == row.saga_id)
                    .collect();
                let theirs = mine.iter().map(|&i| &replies[i]);
                match self.answer(row, theirs, &mut unanswered) {
                    Ok((own, recorded)) => {
                        pending.append(own);
                        answers.extend(recorded);
                    }
                    Err(err) => {
                        for &i in &mine {
                            results[i] = Err(err.shared());
                        }
                    }
                }
            }
            for (step, outcome, took) in log::record_replies(txn, &answers, self.replica()).await?
            {
                if let Some(step) = T::Step::parse(&step) {
                    pending
                        .outcomes
                        .steps
                        .push((step.as_str(), outcome_label(&outcome), took));
                }
            }
            Ok(results)
        })
        .await
    }

    /// Business events (an order paid, a buyer's cancel) for the sagas of their orders, in
    /// one transaction: each saga takes its orders' signals in their order. An order without
    /// a saga (of this type) is ignored.
    pub async fn signal_many(&self, signals: &[(String, Signal)]) -> Result<Results, Error> {
        let mut orders: Vec<&str> = signals.iter().map(|(order, _)| order.as_str()).collect();
        orders.sort_unstable();
        orders.dedup();
        self.atomically(async |txn, pending| {
            let name = self.saga_type().declaration().name;
            let rows = log::lock_by_orders(txn, &orders).await?;
            let mut results: Results = signals.iter().map(|_| Ok(())).collect();
            for row in rows.into_iter().filter(|r| r.saga_type == name) {
                let mine: Vec<usize> = (0..signals.len())
                    .filter(|&i| signals[i].0 == row.order_no)
                    .collect();
                let moved = row::read::<T>(&row).and_then(|mut saga| {
                    let mut machine = Machine::new(self.saga_type(), Utc::now());
                    let mut changed = false;
                    for &i in &mine {
                        changed |= machine.signal(&mut saga, signals[i].1);
                    }
                    let mut own = Pending::default();
                    if changed {
                        self.write(&mut own, row, saga, machine.effects)?;
                    }
                    Ok(own)
                });
                match moved {
                    Ok(own) => pending.append(own),
                    Err(err) => {
                        for &i in &mine {
                            results[i] = Err(err.shared());
                        }
                    }
                }
            }
            Ok(results)
        })
        .await
    }

    /// Moves one saga on its replies (in their order), skipping those answered before; what
    /// it writes, and the replies to record.
    fn answer<'r>(
        &self,
        row: SagaRow,
        replies: impl Iterator<Item = &'r Reply>,
        unanswered: &mut HashSet<StepKey>,
    ) -> Result<(Pending, Vec<Answer>), Error> {
        let mut saga = row::read::<T>(&row)?;
        let mut machine = Machine::new(self.saga_type(), Utc::now());
        let (mut answers, mut moved) = (Vec::new(), false);
        for reply in replies {
            let key = step_key(reply);
            if !unanswered.remove(&key) {
                continue;
            }
            let attempt = key.2;
            answers.push(Answer {
                saga_id: key.0,
                step: key.1,
                attempt,
                outcome: reply
                    .outcome()
                    .as_str_name()
                    .trim_start_matches("REPLY_OUTCOME_")
                    .to_owned(),
                reason: reply.reason.clone(),
                detail: reply.detail.clone(),
            });
            let current = saga.step.as_str() == reply.step && saga.attempt == attempt;
            let awaited = matches!(saga.state, State::Running | State::Compensating);
            if current && awaited {
                machine.reply(&mut saga, reply);
                moved = true;
            }
        }
        let mut pending = Pending::default();
        if moved {
            self.write(&mut pending, row, saga, machine.effects)?;
        }
        Ok((pending, answers))
    }
}

fn step_key(reply: &Reply) -> StepKey {
    (
        reply.saga_id.clone(),
        reply.step.clone(),
        i32::try_from(reply.attempt).unwrap_or(i32::MAX),
    )
}

/// A reply's outcome as a metrics label (a closed set).
fn outcome_label(outcome: &str) -> &'static str {
    match outcome {
        "OK" => "OK",
        "REFUSED" => "REFUSED",
        "FAILED" => "FAILED",
        _ => "OTHER",
    }
}

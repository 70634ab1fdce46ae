//! The step machine: pure logic that moves one saga on a reply, a timer, a signal or an
//! operator's action, following its type's declaration, and says what must happen next
//! (commands to send, timers to set). It does no I/O: the engine loads the saga, runs the
//! machine and writes the result and its effects in one transaction.

use chrono::{DateTime, Utc};
use ticket_proto::saga::v1::Reply;

use super::definition::{Declaration, SagaType, StepKind, StepName, Undo, Verdict};
pub use super::state::{Signal, State, TimerKind};

/// One saga as the machine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Saga<S, D> {
    pub state: State,
    pub step: S,
    pub attempt: i32,
    /// Attempts up to this number do not count against the step's budget (an operator's retry
    /// gives a fresh one).
    pub attempt_base: i32,
    /// Compensations still to run after the current one, next first.
    pub compensations: Vec<S>,
    pub passed_pivot: bool,
    /// An abort signalled while a step before the pivot was in flight; acted on at its reply.
    pub abort_requested: bool,
    pub deadline: Option<DateTime<Utc>>,
    pub incident: Option<String>,
    pub data: D,
}

impl<S: StepName, D> Saga<S, D> {
    /// A new saga at its first step, before anything was sent.
    pub fn new(first: S, data: D) -> Self {
        Self {
            state: State::Running,
            step: first,
            attempt: 0,
            attempt_base: 0,
            compensations: Vec::new(),
            passed_pivot: false,
            abort_requested: false,
            deadline: None,
            incident: None,
            data,
        }
    }
}

/// What the engine must do after the machine moved a saga.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<S> {
    /// Send `step`'s command (attempt `attempt`) and record it in the history.
    Send { step: S, attempt: i32 },
    /// Send `step`'s command once, with no timeout (it never undoes the saga).
    Announce { step: S },
    Timer {
        kind: TimerKind,
        step: S,
        attempt: i32,
        due: DateTime<Utc>,
    },
}

/// An operator's action the saga's state does not allow, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

pub(super) type SagaOf<T> = Saga<<T as SagaType>::Step, <T as SagaType>::Data>;

fn to_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Runs one change of one saga of type `T` at time `now`, collecting its effects.
pub struct Machine<'a, T: SagaType> {
    pub(super) saga_type: &'a T,
    now: DateTime<Utc>,
    pub effects: Vec<Effect<T::Step>>,
}

impl<'a, T: SagaType> Machine<'a, T> {
    pub fn new(saga_type: &'a T, now: DateTime<Utc>) -> Self {
        Self {
            saga_type,
            now,
            effects: Vec::new(),
        }
    }

    pub(super) fn decl(&self) -> &'a Declaration<T::Step> {
        self.saga_type.declaration()
    }

    /// A new saga: its first step.
    pub fn start(&mut self, saga: &mut SagaOf<T>) {
        let first = saga.step;
        self.enter(saga, first, 1);
    }

    /// The reply of the saga's current step and attempt (the engine drops others).
    pub fn reply(&mut self, saga: &mut SagaOf<T>, reply: &Reply) {
        let step = saga.step;
        let verdict = self.saga_type.judge(&mut saga.data, step, reply);
        self.apply(saga, verdict);
    }

    fn apply(&mut self, saga: &mut SagaOf<T>, verdict: Verdict) {
        let step = saga.step;
        let compensating = saga.state == State::Compensating;
        match verdict {
            Verdict::Retry => self.retry_later(saga),
            Verdict::Park(incident) => park(saga, incident),
            Verdict::Done if compensating => self.next_compensation(saga),
            Verdict::Done if saga.abort_requested && !self.decl().after_pivot(step) => {
                let plan = self.decl().compensation_plan(step, true);
                self.compensate(saga, plan, 1);
            }
            Verdict::Done => self.forward(saga, step),
            Verdict::PivotPassed if compensating && step == self.decl().abort => {
                // The abort was refused: the pivot passed first. Nothing was undone yet (the
                // abort runs first), so the saga goes on after the pivot.
                saga.passed_pivot = true;
                saga.abort_requested = false;
                saga.compensations.clear();
                saga.state = State::Running;
                let pivot = self.decl().pivot;
                self.forward(saga, pivot);
            }
            Verdict::Abort if !compensating && !self.decl().after_pivot(step) => {
                // The refusal answers this attempt; an earlier attempt still on its way (a
                // command the broker delivers late, after it was handed over over gRPC) can
                // still take effect. The step's own undo runs too, and a participant makes it
                // a fence that refuses such a late attempt.
                let plan = self.decl().compensation_plan(step, true);
                self.compensate(saga, plan, 1);
            }
            Verdict::Abort | Verdict::PivotPassed => park(
                saga,
                format!(
                    "{} was refused where the saga cannot undo it",
                    step.as_str()
                ),
            ),
        }
    }

    /// A durable timer came due. Returns whether it changed the saga (a stale timer does not).
    pub fn timer(
        &mut self,
        saga: &mut SagaOf<T>,
        kind: TimerKind,
        step: T::Step,
        attempt: i32,
    ) -> bool {
        let at_step = saga.step == step;
        match kind {
            TimerKind::StepTimeout
                if at_step && saga.state.awaits_reply() && saga.attempt == attempt =>
            {
                self.retry_later(saga);
            }
            TimerKind::Retry
                if at_step && saga.state.awaits_reply() && saga.attempt + 1 == attempt =>
            {
                self.send(saga, step, attempt);
            }
            TimerKind::Deadline if at_step && saga.state == State::Waiting => {
                self.saga_type.undoing(&mut saga.data, Undo::DeadlinePassed);
                let plan = self.decl().compensation_plan(step, false);
                self.compensate(saga, plan, 1);
            }
            _ => return false,
        }
        true
    }

    /// A business event. Returns whether it changed the saga.
    pub fn signal(&mut self, saga: &mut SagaOf<T>, signal: Signal) -> bool {
        if saga.state.is_final() {
            return false;
        }
        match signal {
            Signal::PivotPassed if saga.passed_pivot => false,
            Signal::PivotPassed => {
                saga.passed_pivot = true;
                if saga.state == State::Waiting {
                    saga.state = State::Running;
                    let wait = saga.step;
                    self.forward(saga, wait);
                }
                // Running: the wait is skipped when the saga reaches it. Compensating: the
                // abort's refusal carries the saga forward.
                true
            }
            Signal::Abort if saga.passed_pivot || saga.abort_requested => false,
            Signal::Abort => match saga.state {
                State::Waiting => {
                    self.saga_type.undoing(&mut saga.data, Undo::Requested);
                    let plan = self.decl().compensation_plan(saga.step, false);
                    self.compensate(saga, plan, 1);
                    true
                }
                State::Running if !self.decl().after_pivot(saga.step) => {
                    self.saga_type.undoing(&mut saga.data, Undo::Requested);
                    saga.abort_requested = true;
                    true
                }
                _ => false,
            },
        }
    }

    /// A step that failed for a passing reason or timed out: the next attempt after a backoff,
    /// or, when its budget is spent, compensation (before the pivot) or parking (after).
    fn retry_later(&mut self, saga: &mut SagaOf<T>) {
        let step = saga.step;
        if let Some(now) = self.decl().replacement(step) {
            return self.send(saga, now, 1);
        }
        let Some(spec) = self.decl().step(step) else {
            return park(saga, format!("{} is not a step of the saga", step.as_str()));
        };
        let next = saga.attempt + 1;
        let counted = u32::try_from(next - saga.attempt_base).unwrap_or(u32::MAX);
        if counted <= spec.retry.max_attempts {
            let wait = spec
                .retry
                .backoff_before(u32::try_from(next).unwrap_or(u32::MAX));
            self.effects.push(Effect::Timer {
                kind: TimerKind::Retry,
                step,
                attempt: next,
                due: self.now + to_duration(wait),
            });
            return;
        }
        let tried = saga.attempt - saga.attempt_base;
        if saga.state == State::Compensating || self.decl().after_pivot(step) {
            return park(
                saga,
                format!("{} did not succeed in {tried} attempts", step.as_str()),
            );
        }
        self.saga_type.undoing(&mut saga.data, Undo::Exhausted);
        let plan = self.decl().compensation_plan(step, true);
        self.compensate(saga, plan, 1);
    }

    /// The forward step after `done`; the saga completes after the last.
    pub(super) fn forward(&mut self, saga: &mut SagaOf<T>, done: T::Step) {
        if let Some(now) = self.decl().replacement(done) {
            // A retired step's work is done again by its replacement, which does only what
            // is still to do.
            return self.enter(saga, now, 1);
        }
        match self.decl().next(done) {
            Some(next) => {
                let name = next.name;
                self.enter(saga, name, 1);
            }
            None => self.complete(saga),
        }
    }

    /// Moves the saga to `step`: a command is sent; a wait is waited (or skipped, when the
    /// pivot passed already).
    fn enter(&mut self, saga: &mut SagaOf<T>, step: T::Step, attempt: i32) {
        let step = self.decl().replacement(step).unwrap_or(step);
        let Some(spec) = self.decl().step(step) else {
            return park(saga, format!("{} is not a step of the saga", step.as_str()));
        };
        match spec.kind {
            StepKind::Command { .. } => self.send(saga, step, attempt),
            StepKind::Wait { .. } if saga.passed_pivot => self.forward(saga, step),
            StepKind::Wait { window, margin, .. } => {
                saga.state = State::Waiting;
                saga.step = step;
                saga.attempt = 1;
                saga.attempt_base = 0;
                let deadline = *saga.deadline.get_or_insert(self.now + to_duration(window));
                self.effects.push(Effect::Timer {
                    kind: TimerKind::Deadline,
                    step,
                    attempt: 1,
                    due: deadline + to_duration(margin),
                });
            }
        }
    }

    /// Sends attempt `attempt` of command step `step` with its timeout.
    pub(super) fn send(&mut self, saga: &mut SagaOf<T>, step: T::Step, attempt: i32) {
        let step = self.decl().replacement(step).unwrap_or(step);
        let Some(spec) = self.decl().step(step) else {
            return park(saga, format!("{} is not a step of the saga", step.as_str()));
        };
        if saga.deadline.is_none()
            && let Some(window) = self.decl().wait_fixed_by(step)
        {
            // Fixed once: a retried command carries the same deadline.
            saga.deadline = Some(self.now + to_duration(window));
        }
        if saga.step != step {
            saga.attempt_base = 0;
        }
        saga.step = step;
        saga.attempt = attempt;
        self.effects.push(Effect::Send { step, attempt });
        self.effects.push(Effect::Timer {
            kind: TimerKind::StepTimeout,
            step,
            attempt,
            due: self.now + to_duration(spec.timeout),
        });
    }

    pub(super) fn compensate(&mut self, saga: &mut SagaOf<T>, plan: Vec<T::Step>, attempt: i32) {
        saga.abort_requested = false;
        let mut plan = plan.into_iter();
        let Some(first) = plan.next() else {
            return self.compensated(saga);
        };
        saga.state = State::Compensating;
        saga.compensations = plan.collect();
        self.send(saga, first, attempt);
    }

    pub(super) fn next_compensation(&mut self, saga: &mut SagaOf<T>) {
        if saga.compensations.is_empty() {
            return self.compensated(saga);
        }
        let next = saga.compensations.remove(0);
        self.send(saga, next, 1);
    }

    /// Undone: every command of the undo's announcement goes out once, when the saga type
    /// tells of it.
    fn compensated(&mut self, saga: &mut SagaOf<T>) {
        saga.state = State::Compensated;
        if self.saga_type.announces_compensation(&saga.data) {
            for spec in &self.decl().on_compensated {
                self.effects.push(Effect::Announce { step: spec.name });
            }
        }
    }

    /// Done: every completion command goes out once.
    fn complete(&mut self, saga: &mut SagaOf<T>) {
        saga.state = State::Completed;
        for spec in &self.decl().on_complete {
            self.effects.push(Effect::Announce { step: spec.name });
        }
    }
}

fn park<S, D>(saga: &mut Saga<S, D>, incident: String) {
    saga.state = State::Parked;
    saga.incident = Some(incident);
}

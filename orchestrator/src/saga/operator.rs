//! What operators may do to a saga, as moves of the step machine: retry a parked step with a
//! fresh budget, compensate a saga that has not passed its pivot (every compensation still
//! owed, in the saga's own order), skip a parked step done by hand where the declaration allows
//! it. Each is refused, with the reason, where the saga's state does not allow it; the engine
//! records every action with the operator's reason.

use super::definition::{SagaType, Skip, StepName, Undo};
use super::machine::{Machine, Refused, SagaOf};
use super::state::State;

impl<T: SagaType> Machine<'_, T> {
    /// An operator's retry of a parked saga: its current step again, with a fresh budget.
    pub fn retry(&mut self, saga: &mut SagaOf<T>) -> Result<(), Refused> {
        if saga.state != State::Parked {
            return Err(Refused(format!(
                "the saga is {}; only a parked saga is retried",
                saga.state.as_str()
            )));
        }
        let step = saga.step;
        saga.incident = None;
        saga.state = if self.decl().is_compensation(step) {
            State::Compensating
        } else {
            State::Running
        };
        saga.attempt_base = saga.attempt;
        let attempt = saga.attempt + 1;
        self.send(saga, step, attempt);
        Ok(())
    }

    /// An operator's compensation: every compensation still owed, in the saga's own order.
    pub fn compensate_now(&mut self, saga: &mut SagaOf<T>) -> Result<(), Refused> {
        let step = saga.step;
        let refused = |why: &str| Err(Refused(why.to_owned()));
        if saga.state.is_final() {
            return refused("the saga is finished");
        }
        if saga.passed_pivot || self.decl().after_pivot(step) {
            return refused(
                "the saga passed its pivot (the order is paid): retry or skip its step",
            );
        }
        if saga.state == State::Compensating {
            return refused("the saga is already compensating");
        }
        saga.incident = None;
        if self.decl().is_compensation(step) {
            // Parked during its compensation: the parked step again (a fresh attempt and
            // budget), then the rest.
            let mut plan = vec![step];
            plan.append(&mut saga.compensations);
            saga.attempt_base = saga.attempt;
            let attempt = saga.attempt + 1;
            self.compensate(saga, plan, attempt);
            return Ok(());
        }
        self.saga_type.undoing(&mut saga.data, Undo::Operator);
        // A forward step's effect may have happened; a wait has none of its own.
        let plan = self
            .decl()
            .compensation_plan(step, saga.state != State::Waiting);
        self.compensate(saga, plan, 1);
        Ok(())
    }

    /// An operator marks a parked step done by hand: the saga moves on as if it succeeded.
    pub fn skip(&mut self, saga: &mut SagaOf<T>) -> Result<(), Refused> {
        let step = saga.step;
        if saga.state != State::Parked {
            return Err(Refused(format!(
                "the saga is {}; only a parked saga's step is skipped",
                saga.state.as_str()
            )));
        }
        let spec = self
            .decl()
            .step(step)
            .ok_or_else(|| Refused(format!("{} is not a step of the saga", step.as_str())))?;
        if let Skip::Refused(why) = spec.skip {
            return Err(Refused(format!(
                "{} cannot be skipped: {why}",
                step.as_str()
            )));
        }
        saga.incident = None;
        if self.decl().is_compensation(step) {
            saga.state = State::Compensating;
            self.next_compensation(saga);
        } else {
            saga.state = State::Running;
            self.forward(saga, step);
        }
        Ok(())
    }
}

//! A saga's log row as the step machine sees it, and back: the row stores states, steps and the
//! compensations owed by name and the saga type's data as JSON; a row this version cannot read
//! is corrupt (the engine parks it for an operator).

use super::SagaOf;
use crate::error::Error;
use crate::saga::definition::{SagaType, StepName};
use crate::saga::log::SagaRow;
use crate::saga::machine::{Saga, State};

/// The machine's view of a log row.
pub(super) fn read<T: SagaType>(row: &SagaRow) -> Result<SagaOf<T>, Error> {
    let corrupt = |what: String| Error::Corrupt(format!("saga {}: {what}", row.saga_id));
    let compensations: Vec<String> = serde_json::from_value(row.compensations.clone())
        .map_err(|err| corrupt(format!("compensations: {err}")))?;
    Ok(Saga {
        state: State::parse(&row.state).ok_or_else(|| corrupt(format!("state {}", row.state)))?,
        step: parse_step(&row.step)?,
        attempt: row.attempt,
        attempt_base: row.attempt_base,
        compensations: compensations
            .iter()
            .map(|s| parse_step(s))
            .collect::<Result<_, _>>()?,
        passed_pivot: row.passed_pivot,
        abort_requested: row.abort_requested,
        deadline: row.deadline,
        incident: row.incident.clone(),
        data: serde_json::from_value(row.data.clone())
            .map_err(|err| corrupt(format!("data: {err}")))?,
    })
}

/// Writes the machine's view of the saga into its row (saved by `log::save`).
pub(super) fn apply<T: SagaType>(row: &mut SagaRow, saga: &SagaOf<T>) -> Result<(), Error> {
    row.state = saga.state.as_str().to_owned();
    row.step = saga.step.as_str().to_owned();
    row.attempt = saga.attempt;
    row.attempt_base = saga.attempt_base;
    row.compensations = serde_json::json!(
        saga.compensations
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
    );
    row.passed_pivot = saga.passed_pivot;
    row.abort_requested = saga.abort_requested;
    row.deadline = saga.deadline;
    row.incident = saga.incident.clone();
    row.data = serde_json::to_value(&saga.data)
        .map_err(|err| Error::Corrupt(format!("saga data: {err}")))?;
    Ok(())
}

pub(super) fn parse_step<S: StepName>(text: &str) -> Result<S, Error> {
    S::parse(text).ok_or_else(|| Error::Corrupt(format!("unknown step {text}")))
}

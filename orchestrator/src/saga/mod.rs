//! Sagas: what a saga type declares (`definition`), the step machine that runs a declaration
//! (`machine`, pure), the operators' moves (`operator`), the closed sets it works with
//! (`state`), the engine that runs it in transactions against the log (`engine`, `log`), what
//! it counts (`metrics`), and the purchase saga (`purchase`).

pub mod definition;
pub mod engine;
pub mod log;
pub mod machine;
pub mod metrics;
pub mod operator;
pub mod purchase;
pub mod state;

#[cfg(test)]
mod machine_tests;

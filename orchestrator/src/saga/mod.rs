//! The saga: its definition as data, its log in Postgres, and the engine that drives it.

pub mod definition;
pub mod engine;
pub mod log;

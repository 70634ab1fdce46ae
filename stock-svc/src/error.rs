//! What can go wrong in stock-svc, and the one mapping of it to gRPC status codes.

use sea_orm::{DbErr, SqlErr};
use tonic::Status;

use crate::gate::GateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The order's fence forbids the change (confirm after rollback, rollback after confirm).
    #[error("{0}")]
    Refused(String),
    /// The change's record was refused: its tier was loaded into Redis or checked against the
    /// ledger since the change's script ran (`crate::ledger`). A passing failure: the command
    /// runs again, on the Redis the check left.
    #[error("{0}")]
    CheckedMeanwhile(String),
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("live stock: {0}")]
    Gate(#[from] GateError),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(msg) => Status::invalid_argument(msg),
            Error::NotFound(msg) => Status::not_found(msg),
            Error::AlreadyExists(msg) => Status::already_exists(msg),
            Error::Refused(msg) => Status::failed_precondition(msg),
            Error::CheckedMeanwhile(msg) => Status::unavailable(msg),
            Error::Database(db) => match db.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(detail)) => Status::already_exists(detail),
                _ => {
                    tracing::error!(error = %db, "database failure");
                    Status::unavailable("the stock database is unavailable; retry later")
                }
            },
            Error::Gate(gate) => {
                tracing::error!(error = %gate, "live stock failure");
                Status::unavailable("the live stock store is unavailable; retry later")
            }
        }
    }
}

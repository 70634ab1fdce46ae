//! What can go wrong in order-svc, and the one mapping of it to gRPC status codes.

use sea_orm::{DbErr, SqlErr};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The order's state forbids the call; `reason` is machine-readable (a saga reply's reason).
    #[error("{detail}")]
    Precondition {
        reason: &'static str,
        detail: String,
    },
    #[error("{0}")]
    SoldOut(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// stock-svc's catalog could not be asked.
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("live stock (Redis): {0}")]
    Redis(#[from] fred::error::Error),
}

impl Error {
    pub fn precondition(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Precondition {
            reason,
            detail: detail.into(),
        }
    }

    /// A failure that passes (a dependency down), as opposed to an answer about the input.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Catalog(_) | Self::Redis(_))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(msg) => Status::invalid_argument(msg),
            Error::NotFound(msg) => Status::not_found(msg),
            Error::Precondition { detail, .. } => Status::failed_precondition(detail),
            Error::SoldOut(msg) => Status::resource_exhausted(msg),
            Error::AlreadyExists(msg) => Status::already_exists(msg),
            Error::Database(db) => match db.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(detail)) => Status::already_exists(detail),
                _ => {
                    tracing::error!(error = %db, "database failure");
                    Status::unavailable("the order database is unavailable; retry later")
                }
            },
            Error::Catalog(msg) => {
                tracing::error!(error = %msg, "catalog failure");
                Status::unavailable("the catalog is unavailable; retry later")
            }
            Error::Redis(err) => {
                tracing::error!(error = %err, "live stock failure");
                Status::unavailable("the live stock store is unavailable; retry later")
            }
        }
    }
}

//! The orchestrator's errors, and their one mapping to gRPC codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The saga log (Postgres) failed; the call may be retried.
    #[error("the saga log is unavailable: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The saga's state does not allow what was asked.
    #[error("{0}")]
    Precondition(String),
    /// The saga log holds something this version cannot read or act on (an unknown state,
    /// step or timer kind, or data of another shape).
    #[error("the saga log is inconsistent: {0}")]
    Corrupt(String),
    /// A batch this call was part of failed, or the engine is stopping; the call may be
    /// retried.
    #[error("{0}")]
    Unavailable(String),
}

/// An identifier a client or an event gave (an order number, a user id, a saga or message id):
/// at most 64 characters, without spaces or control characters.
pub fn identifier(field: &str, value: &str) -> Result<String, Error> {
    ticket_platform::fields::identifier(field, value, 64).map_err(Error::Invalid)
}

impl From<ticket_platform::group_commit::NotRun> for Error {
    fn from(not_run: ticket_platform::group_commit::NotRun) -> Self {
        Self::Unavailable(not_run.to_string())
    }
}

impl Error {
    /// The same error for another caller: each item of a batch that failed as a whole gets
    /// one (a database failure becomes [`Error::Unavailable`], still worth a retry).
    pub fn shared(&self) -> Self {
        match self {
            Self::Database(_) | Self::Unavailable(_) => Self::Unavailable(self.to_string()),
            Self::NotFound(what) => Self::NotFound(what.clone()),
            Self::Invalid(what) => Self::Invalid(what.clone()),
            Self::Precondition(what) => Self::Precondition(what.clone()),
            Self::Corrupt(what) => Self::Corrupt(what.clone()),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Database(cause) => {
                tracing::error!(error = %cause, "saga log failure");
                Status::unavailable("the saga log is unavailable; retry later")
            }
            Error::NotFound(what) => Status::not_found(what),
            Error::Invalid(what) => Status::invalid_argument(what),
            Error::Precondition(what) => Status::failed_precondition(what),
            Error::Corrupt(what) => {
                tracing::error!(error = %what, "saga log inconsistent");
                Status::internal(format!("the saga log is inconsistent: {what}"))
            }
            Error::Unavailable(what) => {
                tracing::error!(error = %what, "saga batch failed");
                Status::unavailable("the saga log is unavailable; retry later")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_code() {
        let cases = [
            (
                Error::Database(sea_orm::DbErr::Custom("down".into())),
                tonic::Code::Unavailable,
            ),
            (Error::NotFound("no saga".into()), tonic::Code::NotFound),
            (
                Error::Invalid("bad id".into()),
                tonic::Code::InvalidArgument,
            ),
            (
                Error::Precondition("paid".into()),
                tonic::Code::FailedPrecondition,
            ),
            (Error::Corrupt("step X".into()), tonic::Code::Internal),
            (
                Error::Unavailable("stopping".into()),
                tonic::Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn a_shared_database_failure_stays_worth_a_retry() {
        let err = Error::Database(sea_orm::DbErr::Custom("down".into()));
        assert!(matches!(err.shared(), Error::Unavailable(text) if text.contains("down")));
        assert!(matches!(
            Error::Corrupt("step X".into()).shared(),
            Error::Corrupt(text) if text == "step X"
        ));
    }

    #[test]
    fn a_database_failure_does_not_leak_its_cause() {
        let status = Status::from(Error::Database(sea_orm::DbErr::Custom(
            "password authentication failed".into(),
        )));
        assert!(!status.message().contains("password"), "{status:?}");
    }
}

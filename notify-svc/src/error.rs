//! What can go wrong in notify-svc, and the one mapping of it to gRPC status codes.

use sea_orm::DbErr;
use tonic::Status;

use crate::notifications::template_names;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of a request or command that can never be valid (empty, too long, wrong body).
    #[error("{0}")]
    Invalid(String),
    /// A notification on a channel this service does not have.
    #[error("channel {0:?} is not SMS, EMAIL or PUSH")]
    UnknownChannel(String),
    /// A notification from a template this service does not have.
    #[error("template {0:?} does not exist; the templates are {names}", names = template_names())]
    UnknownTemplate(String),
    /// The delivery log could not be asked or written: a passing failure.
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// A row of the delivery log that does not read as a notification (the schema and the code
    /// disagree): retrying will not help.
    #[error("delivery log row: {0}")]
    UnreadableRow(#[source] DbErr),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(_) | Error::UnknownChannel(_) | Error::UnknownTemplate(_) => {
                Status::invalid_argument(err.to_string())
            }
            Error::Database(db) => {
                tracing::error!(error = %db, "database failure");
                Status::unavailable("the notification database is unavailable; retry later")
            }
            Error::UnreadableRow(db) => {
                tracing::error!(error = %db, "a delivery log row could not be read");
                Status::internal("a notification in the delivery log could not be read")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::error::ConnAcquireErr;
    use tonic::Code;

    use super::*;

    fn status(err: Error) -> Status {
        Status::from(err)
    }

    #[test]
    fn bad_input_is_invalid_argument_with_the_reason() {
        let invalid = status(Error::Invalid("order_no must not be empty".into()));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(invalid.message(), "order_no must not be empty");

        let channel = status(Error::UnknownChannel("FAX".into()));
        assert_eq!(channel.code(), Code::InvalidArgument);
        assert_eq!(
            channel.message(),
            r#"channel "FAX" is not SMS, EMAIL or PUSH"#
        );

        let template = status(Error::UnknownTemplate("welcome".into()));
        assert_eq!(template.code(), Code::InvalidArgument);
        assert_eq!(
            template.message(),
            r#"template "welcome" does not exist; the templates are purchase_confirmed, order_cancelled"#
        );
    }

    #[test]
    fn a_database_failure_is_unavailable_without_its_internals() {
        let down = status(Error::Database(DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout,
        )));
        assert_eq!(down.code(), Code::Unavailable);
        assert_eq!(
            down.message(),
            "the notification database is unavailable; retry later"
        );
    }

    #[test]
    fn an_unreadable_row_is_internal_without_its_internals() {
        let unreadable = status(Error::UnreadableRow(DbErr::Type(
            "column sent_at is text".into(),
        )));
        assert_eq!(unreadable.code(), Code::Internal);
        assert!(!unreadable.message().contains("sent_at"));
    }
}

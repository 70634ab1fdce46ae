//! `NotificationService` over gRPC: an order's delivery log (`ListNotifications`), and for
//! operators the notifications that spent their attempts (`ListFailedNotifications`) and a
//! fresh budget for one of them (`RetryNotification`).

use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement};
use ticket_proto::notify::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::Error;

/// The longest identifier (order number, user id) this service takes.
pub const MAX_ID_LEN: usize = 64;

/// A client's identifier, or `Invalid` with a sentence saying what is wrong with `field`.
pub fn identifier(field: &str, value: &str, max: usize) -> Result<String, Error> {
    ticket_platform::fields::identifier(field, value, max).map_err(Error::Invalid)
}

/// `NotificationService`.
pub struct NotificationApi {
    pub db: DatabaseConnection,
    pub access: ticket_platform::auth::Access,
}

/// The delivery log's columns as [`message`] reads them.
const COLUMNS: &str = "order_no, channel, recipient, body, status, sent_at, template, user_id, \
                       attempts, provider_id, last_error, created_at, updated_at";

impl NotificationApi {
    /// The notifications of `order_no`, in the order they were recorded.
    async fn list(&self, order_no: &str) -> Result<Vec<pb::Notification>, Error> {
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                format!("SELECT {COLUMNS} FROM notification WHERE order_no = $1 ORDER BY id"),
                [order_no.into()],
            ))
            .await?;
        rows.iter().map(message).collect()
    }

    /// The FAILED notifications, oldest first.
    async fn failed(&self, limit: u32) -> Result<Vec<pb::Notification>, Error> {
        let limit = if limit == 0 { 100 } else { limit.min(100) };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                format!(
                    "SELECT {COLUMNS} FROM notification WHERE status = 'FAILED' \
                     ORDER BY updated_at, id LIMIT $1"
                ),
                [i64::from(limit).into()],
            ))
            .await?;
        rows.iter().map(message).collect()
    }

    /// A FAILED notification back to PENDING with a fresh budget of attempts.
    async fn retry(&self, order_no: &str, channel: &str, template: &str) -> Result<Retry, Error> {
        let key = [order_no.into(), channel.into(), template.into()];
        let retried = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                format!(
                    "UPDATE notification SET status = 'PENDING', attempts = 0, \
                       next_attempt_at = now(), updated_at = now() \
                     WHERE order_no = $1 AND channel = $2 AND template = $3 \
                       AND status = 'FAILED' RETURNING {COLUMNS}"
                ),
                key.clone(),
            ))
            .await?;
        if let Some(row) = retried.first() {
            return Ok(Retry::Retried(message(row)?));
        }
        let found = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                format!(
                    "SELECT {COLUMNS} FROM notification \
                     WHERE order_no = $1 AND channel = $2 AND template = $3"
                ),
                key,
            ))
            .await?;
        Ok(match found.first() {
            Some(row) => Retry::NotFailed(message(row)?),
            None => Retry::Missing,
        })
    }
}

enum Retry {
    Retried(pb::Notification),
    NotFailed(pb::Notification),
    Missing,
}

/// A row of the delivery log as its message.
fn message(row: &QueryResult) -> Result<pb::Notification, Error> {
    let get = |column: &str| -> Result<Option<String>, Error> {
        row.try_get("", column).map_err(Error::UnreadableRow)
    };
    let time = |column: &str| -> Result<Option<prost_types::Timestamp>, Error> {
        let at: Option<chrono::DateTime<chrono::Utc>> =
            row.try_get("", column).map_err(Error::UnreadableRow)?;
        Ok(at.map(ticket_platform::time::timestamp))
    };
    let channel_name = get("channel")?.unwrap_or_default();
    Ok(pb::Notification {
        order_no: get("order_no")?.unwrap_or_default(),
        channel: channel(&channel_name) as i32,
        recipient: get("recipient")?.unwrap_or_default(),
        body: get("body")?.unwrap_or_default(),
        status: get("status")?.unwrap_or_default(),
        sent_at: time("sent_at")?,
        template: get("template")?.unwrap_or_default(),
        user_id: get("user_id")?.unwrap_or_default(),
        attempts: row.try_get("", "attempts").map_err(Error::UnreadableRow)?,
        provider_id: get("provider_id")?.unwrap_or_default(),
        last_error: get("last_error")?.unwrap_or_default(),
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

fn channel_name(channel: i32) -> Option<&'static str> {
    match pb::Channel::try_from(channel) {
        Ok(pb::Channel::Sms) => Some("SMS"),
        Ok(pb::Channel::Email) => Some("EMAIL"),
        Ok(pb::Channel::Push) => Some("PUSH"),
        _ => None,
    }
}

fn channel(name: &str) -> pb::Channel {
    match name {
        "SMS" => pb::Channel::Sms,
        "EMAIL" => pb::Channel::Email,
        "PUSH" => pb::Channel::Push,
        _ => pb::Channel::Unspecified,
    }
}

#[tonic::async_trait]
impl pb::notification_service_server::NotificationService for NotificationApi {
    #[tracing::instrument(skip_all, fields(order_no))]
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let actor = self.access.buyer(&request)?;
        let order_no = identifier("order_no", &request.into_inner().order_no, MAX_ID_LEN)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        let mut notifications = self.list(&order_no).await?;
        // Another buyer's order reads as one with no notifications, as an unknown one does.
        notifications.retain(|notification| actor.may_see(&notification.user_id));
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_no))]
    async fn retry_notification(
        &self,
        request: Request<pb::RetryNotificationRequest>,
    ) -> Result<Response<pb::Notification>, Status> {
        self.access.admin(&request)?;
        let request = request.into_inner();
        let order_no = identifier("order_no", &request.order_no, MAX_ID_LEN)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        let channel = channel_name(request.channel)
            .ok_or_else(|| Error::Invalid("channel must be SMS, EMAIL or PUSH".into()))?;
        let template = identifier("template", &request.template, MAX_ID_LEN)?;
        if !crate::notifications::EVENTS
            .iter()
            .any(|(name, _)| *name == template)
        {
            return Err(Error::UnknownTemplate(template).into());
        }
        match self.retry(&order_no, channel, &template).await? {
            Retry::Retried(notification) => {
                tracing::info!(%order_no, channel, %template, "a failed notification is sent again");
                Ok(Response::new(notification))
            }
            Retry::NotFailed(notification) => Err(Status::failed_precondition(format!(
                "the {channel} notification {template:?} of order {order_no} is {}, not FAILED",
                notification.status
            ))),
            Retry::Missing => Err(Status::not_found(format!(
                "order {order_no} has no {channel} notification {template:?}"
            ))),
        }
    }

    async fn list_failed_notifications(
        &self,
        request: Request<pb::ListFailedNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.access.admin(&request)?;
        let notifications = self.failed(request.into_inner().limit).await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications,
        }))
    }
}

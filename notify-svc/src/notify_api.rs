//! `NotificationService` over gRPC: an order's delivery log (`ListNotifications`).

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
}

impl NotificationApi {
    /// The notifications of `order_no`, in the order they were recorded.
    async fn list(&self, order_no: &str) -> Result<Vec<pb::Notification>, Error> {
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "SELECT order_no, channel, recipient, body, status, sent_at FROM notification \
                 WHERE order_no = $1 ORDER BY id",
                [order_no.into()],
            ))
            .await?;
        rows.iter().map(message).collect()
    }
}

/// A row of the delivery log as its message.
fn message(row: &QueryResult) -> Result<pb::Notification, Error> {
    let sent_at: chrono::DateTime<chrono::Utc> =
        row.try_get("", "sent_at").map_err(Error::UnreadableRow)?;
    let channel_name: String = row.try_get("", "channel").map_err(Error::UnreadableRow)?;
    Ok(pb::Notification {
        order_no: row.try_get("", "order_no").map_err(Error::UnreadableRow)?,
        channel: channel(&channel_name) as i32,
        recipient: row.try_get("", "recipient").map_err(Error::UnreadableRow)?,
        body: row.try_get("", "body").map_err(Error::UnreadableRow)?,
        status: row.try_get("", "status").map_err(Error::UnreadableRow)?,
        sent_at: Some(ticket_platform::time::timestamp(sent_at)),
    })
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
        let order_no = identifier("order_no", &request.into_inner().order_no, MAX_ID_LEN)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        let notifications = self.list(&order_no).await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications,
        }))
    }
}

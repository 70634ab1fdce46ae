//! Notifications: the orchestrator's `SMS`, `EMAIL` and `PUSH` commands (over
//! `NOTIFICATION_TOPIC` and `Participant.Execute`), rendered from their template and written to
//! the delivery log once per (order, channel, template); and `ListNotifications`.
//!
//! Delivery itself goes through the `log` channel, the only one this build has: the rendered
//! message is written to the service log and recorded with status `LOGGED`. A gateway (SMS
//! provider, mail relay, push service) plugs in where [`deliver`] is.

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement};
use ticket_platform::messaging::tag;
use ticket_platform::participant::{Answer, CommandHandler};
use ticket_proto::notify::v1 as pb;
use ticket_proto::saga::v1::Command;
use ticket_proto::saga::v1::command::Body;
use tonic::{Request, Response, Status};

/// The consumer group of notify-svc on `NOTIFICATION_TOPIC`.
pub const CONSUMER_GROUP: &str = "notify-svc";
pub const TAGS: &[&str] = &[tag::SMS, tag::EMAIL, tag::PUSH];

/// The templates this service knows, and their text (`{order_no}` is filled in).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "purchase_confirmed",
        "Your tickets for order {order_no} are confirmed. Enjoy the show!",
    ),
    (
        "order_cancelled",
        "Order {order_no} was cancelled; any payment is refunded.",
    ),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub order_no: String,
    pub channel: &'static str,
    pub recipient: String,
    pub template: String,
    pub body: String,
}

fn notification(command: &Command) -> Result<(Notification, &'static str), String> {
    let Some(Body::Notify(notify)) = &command.body else {
        return Err("notify-svc handles SMS, EMAIL and PUSH notifications only".into());
    };
    if command.order_no.is_empty() {
        return Err("the notification has no order_no".into());
    }
    let channel = match notify.channel.as_str() {
        "SMS" => tag::SMS,
        "EMAIL" => tag::EMAIL,
        "PUSH" => tag::PUSH,
        other => return Err(format!("channel {other:?} is not SMS, EMAIL or PUSH")),
    };
    if notify.user_id.is_empty() {
        return Err("the notification has no recipient (user_id)".into());
    }
    let text = TEMPLATES
        .iter()
        .find(|(name, _)| *name == notify.template)
        .map(|(_, text)| *text)
        .ok_or_else(|| format!("template {:?} does not exist", notify.template))?;
    Ok((
        Notification {
            order_no: command.order_no.clone(),
            channel,
            recipient: notify.user_id.clone(),
            template: notify.template.clone(),
            body: text.replace("{order_no}", &command.order_no),
        },
        channel,
    ))
}

/// Sends a notification on its channel. This build has the log channel only.
fn deliver(notification: &Notification) -> &'static str {
    tracing::info!(
        order_no = %notification.order_no,
        channel = notification.channel,
        recipient = %notification.recipient,
        body = %notification.body,
        "notification"
    );
    "LOGGED"
}

pub struct NotifyCommands;

impl CommandHandler for NotifyCommands {
    type Checked = Notification;

    fn check(&self, command: &Command) -> Result<(Notification, &'static str), String> {
        notification(command)
    }

    async fn run(&self, n: &Notification, txn: &DatabaseTransaction) -> Result<Answer, String> {
        let inserted = txn
            .execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "INSERT INTO notification (order_no, channel, recipient, template, body, status) \
                 VALUES ($1, $2, $3, $4, $5, 'PENDING') \
                 ON CONFLICT (order_no, channel, template) DO NOTHING",
                [
                    n.order_no.clone().into(),
                    n.channel.into(),
                    n.recipient.clone().into(),
                    n.template.clone().into(),
                    n.body.clone().into(),
                ],
            ))
            .await
            .map_err(|err| err.to_string())?
            .rows_affected();
        if inserted == 1 {
            let status = deliver(n);
            txn.execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "UPDATE notification SET status = $4 \
                 WHERE order_no = $1 AND channel = $2 AND template = $3",
                [
                    n.order_no.clone().into(),
                    n.channel.into(),
                    n.template.clone().into(),
                    status.into(),
                ],
            ))
            .await
            .map_err(|err| err.to_string())?;
        }
        Ok(Answer::ok(
            format!("{} to {} for order {}", n.channel, n.recipient, n.order_no),
            None,
        ))
    }
}

/// `NotificationService`.
pub struct NotificationApi {
    pub db: DatabaseConnection,
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
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let order_no = request.into_inner().order_no;
        if order_no.is_empty() || order_no.len() > 64 {
            return Err(Status::invalid_argument(
                "order_no must be between 1 and 64 characters",
            ));
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "SELECT order_no, channel, recipient, body, status, sent_at FROM notification \
                 WHERE order_no = $1 ORDER BY id",
                [order_no.into()],
            ))
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "database failure");
                Status::unavailable("the notification database is unavailable; retry later")
            })?;
        let mut notifications = Vec::with_capacity(rows.len());
        for row in rows {
            let read = |err: sea_orm::DbErr| Status::internal(err.to_string());
            let sent_at: chrono::DateTime<chrono::Utc> =
                row.try_get("", "sent_at").map_err(read)?;
            let channel_name: String = row.try_get("", "channel").map_err(read)?;
            notifications.push(pb::Notification {
                order_no: row.try_get("", "order_no").map_err(read)?,
                channel: channel(&channel_name) as i32,
                recipient: row.try_get("", "recipient").map_err(read)?,
                body: row.try_get("", "body").map_err(read)?,
                status: row.try_get("", "status").map_err(read)?,
                sent_at: Some(ticket_platform::time::timestamp(sent_at)),
            });
        }
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications,
        }))
    }
}

//! Notifications: the orchestrator's `SMS`, `EMAIL` and `PUSH` commands (over
//! `NOTIFICATION_TOPIC` and `Participant.Execute`), written to the delivery log once per
//! (order, channel, template), `PENDING`, in the command's transaction (rendered from their
//! templates only when sent, from the order as it is then). Nothing is sent there: `crate::delivery` sends the row after the commit,
//! outside any transaction, and records its outcome. The command is answered once the row is
//! written: a notification that cannot be sent never holds up or undoes a purchase.

use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};
use ticket_platform::messaging::tag;
use ticket_platform::participant::{Answer, CommandHandler};
use ticket_proto::saga::v1::Command;
use ticket_proto::saga::v1::command::Body;

use crate::error::Error;
use crate::notify_api::{MAX_ID_LEN, identifier};

/// The consumer group of notify-svc on `NOTIFICATION_TOPIC`.
pub const CONSUMER_GROUP: &str = "notify-svc";
pub const TAGS: &[&str] = &[tag::SMS, tag::EMAIL, tag::PUSH];

/// The events notifications are sent for (`crate::templates` has their texts), and the line
/// the delivery log keeps for each until it is sent (`{order_no}` is filled in). A sent
/// notification keeps the text it was sent with instead.
pub(crate) const EVENTS: &[(&str, &str)] = &[
    (
        "purchase_confirmed",
        "Tickets confirmed for order {order_no}.",
    ),
    ("order_cancelled", "Order {order_no} was cancelled."),
];

/// The names of the events this service knows, for a person reading an error.
pub fn template_names() -> String {
    EVENTS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub order_no: String,
    pub channel: &'static str,
    /// The buyer (the address comes from order-svc when the notification is sent).
    pub user_id: String,
    pub template: String,
    pub body: String,
}

fn notification(command: &Command) -> Result<(Notification, &'static str), Error> {
    let notify = match &command.body {
        Some(Body::Notify(notify)) => notify,
        Some(_) => {
            return Err(Error::Invalid(
                "notify-svc handles SMS, EMAIL and PUSH notifications only".into(),
            ));
        }
        None => return Err(Error::Invalid("the command has no body".into())),
    };
    let order_no = identifier("order_no", &command.order_no, MAX_ID_LEN)?;
    let channel = match notify.channel.as_str() {
        "SMS" => tag::SMS,
        "EMAIL" => tag::EMAIL,
        "PUSH" => tag::PUSH,
        other => return Err(Error::UnknownChannel(other.to_owned())),
    };
    let user_id = identifier("user_id", &notify.user_id, MAX_ID_LEN)?;
    let text = EVENTS
        .iter()
        .find(|(name, _)| *name == notify.template)
        .map(|(_, text)| *text)
        .ok_or_else(|| Error::UnknownTemplate(notify.template.clone()))?;
    Ok((
        Notification {
            body: text.replace("{order_no}", &order_no),
            order_no,
            channel,
            user_id,
            template: notify.template.clone(),
        },
        channel,
    ))
}

/// Writes `n` to the delivery log, `PENDING`, in the current trace, once per (order, channel, template): a repeated
/// command finds its row and answers OK again without queueing it twice.
async fn queue(n: &Notification, txn: &DatabaseTransaction) -> Result<Answer, Error> {
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO notification (order_no, channel, recipient, template, body, status, \
           user_id, traceparent) VALUES ($1, $2, '', $3, $4, 'PENDING', $5, $6) \
         ON CONFLICT (order_no, channel, template) DO NOTHING",
        [
            n.order_no.clone().into(),
            n.channel.into(),
            n.template.clone().into(),
            n.body.clone().into(),
            n.user_id.clone().into(),
            // Its sending continues the trace of the command that asked for it.
            ticket_platform::telemetry::current_traceparent().into(),
        ],
    ))
    .await?;
    Ok(Answer::ok(
        format!("{} for order {} queued", n.channel, n.order_no),
        None,
    ))
}

/// notify-svc's commands, behind both doors (`NOTIFICATION_TOPIC` and `Participant.Execute`).
/// The platform's handler speaks in sentences: a `check` error can never succeed (dead letter,
/// `INVALID_ARGUMENT`), a `run` error is a passing failure (retried).
pub struct NotifyCommands;

impl CommandHandler for NotifyCommands {
    type Checked = Notification;

    fn check(&self, command: &Command) -> Result<(Notification, &'static str), String> {
        notification(command).map_err(|err| err.to_string())
    }

    async fn run(&self, n: &Notification, txn: &DatabaseTransaction) -> Result<Answer, String> {
        queue(n, txn).await.map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use ticket_proto::saga::v1::{Notify, OrderConfirm};

    use super::*;

    fn command(order_no: &str, channel: &str, user_id: &str, template: &str) -> Command {
        Command {
            saga_id: "saga-1".into(),
            order_no: order_no.into(),
            step: "NOTIFY_SMS".into(),
            attempt: 1,
            body: Some(Body::Notify(Notify {
                channel: channel.into(),
                user_id: user_id.into(),
                template: template.into(),
            })),
        }
    }

    #[test]
    fn a_notification_is_queued_with_its_event_line() {
        let (n, tag) = notification(&command("T1", "EMAIL", "u1", "purchase_confirmed"))
            .expect("a valid notification");
        assert_eq!(tag, tag::EMAIL);
        assert_eq!(n.user_id, "u1");
        assert_eq!(n.body, "Tickets confirmed for order T1.");
    }

    #[test]
    fn a_notification_that_can_never_be_sent_says_why() {
        let reason = |c: &Command| notification(c).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            reason(&command("T1", "FAX", "u1", "purchase_confirmed")),
            Err(r#"channel "FAX" is not SMS, EMAIL or PUSH"#.into())
        );
        assert!(
            reason(&command("T1", "SMS", "u1", "welcome"))
                .is_err_and(|e| e.contains("purchase_confirmed, order_cancelled"))
        );
        assert_eq!(
            reason(&command("", "SMS", "u1", "purchase_confirmed")),
            Err("order_no must not be empty".into())
        );
        assert_eq!(
            reason(&command("T1", "SMS", "", "purchase_confirmed")),
            Err("user_id must not be empty".into())
        );
        let mut confirm = command("T1", "SMS", "u1", "purchase_confirmed");
        confirm.body = Some(Body::OrderConfirm(OrderConfirm::default()));
        assert!(reason(&confirm).is_err_and(|e| e.contains("notifications only")));
    }
}

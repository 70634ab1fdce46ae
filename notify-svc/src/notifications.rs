//! Notifications: the orchestrator's `NOTIFY` command (several channels) and `SMS`, `EMAIL` and
//! `PUSH` commands (one each), over `NOTIFICATION_TOPIC` and `Participant.Execute`, written to
//! the delivery log once per (order, channel, template), `PENDING`, in the command's
//! transaction (rendered from their templates only when sent, from the order as it is then).
//! Nothing is sent there: `crate::delivery` sends the rows after the commit, outside any
//! transaction, and records their outcomes. The command is answered once the rows are written:
//! a notification that cannot be sent never holds up or undoes a purchase.

use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};
use ticket_platform::messaging::tag;
use ticket_platform::participant::{Answer, CommandHandler};
use ticket_proto::saga::v1::Command;
use ticket_proto::saga::v1::command::Body;

use crate::error::Error;
use crate::notify_api::{MAX_ID_LEN, identifier};

/// The consumer group of notify-svc on `NOTIFICATION_TOPIC`.
pub const CONSUMER_GROUP: &str = "notify-svc";
pub const TAGS: &[&str] = &[tag::NOTIFY, tag::SMS, tag::EMAIL, tag::PUSH];

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

/// One event for one buyer, on one or more channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub order_no: String,
    /// Each once, in the order the command named them.
    pub channels: Vec<&'static str>,
    /// The buyer (the address comes from order-svc when the notification is sent).
    pub user_id: String,
    pub template: String,
    pub body: String,
}

fn channel(name: &str) -> Result<&'static str, Error> {
    match name {
        "SMS" => Ok(tag::SMS),
        "EMAIL" => Ok(tag::EMAIL),
        "PUSH" => Ok(tag::PUSH),
        other => Err(Error::UnknownChannel(other.to_owned())),
    }
}

/// The command's notification and its tag: the channel's for one in `channel`, `NOTIFY` for
/// those in `channels`.
fn notification(command: &Command) -> Result<(Notification, &'static str), Error> {
    let notify = match &command.body {
        Some(Body::Notify(notify)) => notify,
        Some(_) => {
            return Err(Error::Invalid(
                "notify-svc handles NOTIFY, SMS, EMAIL and PUSH notifications only".into(),
            ));
        }
        None => return Err(Error::Invalid("the command has no body".into())),
    };
    let order_no = identifier("order_no", &command.order_no, MAX_ID_LEN)?;
    let (channels, tag) = match (notify.channel.as_str(), notify.channels.as_slice()) {
        ("", []) => {
            return Err(Error::Invalid(
                "the notification names no channel: set channel, or channels".into(),
            ));
        }
        (one, []) => {
            let one = channel(one)?;
            (vec![one], one)
        }
        ("", many) => {
            let mut channels = Vec::with_capacity(many.len());
            for name in many {
                let name = channel(name)?;
                if !channels.contains(&name) {
                    channels.push(name);
                }
            }
            (channels, tag::NOTIFY)
        }
        (_, _) => {
            return Err(Error::Invalid(
                "the notification sets both channel and channels: set one".into(),
            ));
        }
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
            channels,
            user_id,
            template: notify.template.clone(),
        },
        tag,
    ))
}

/// Writes `n` to the delivery log, one row per channel, `PENDING`, in the current trace, once
/// per (order, channel, template): a repeated command finds its rows and answers OK again
/// without queueing any twice.
async fn queue(n: &Notification, txn: &DatabaseTransaction) -> Result<Answer, Error> {
    // One row per channel (at most three: one statement per count, each planned once).
    let channels = (0..n.channels.len())
        .map(|i| format!("(${})", i + 6))
        .collect::<Vec<_>>()
        .join(", ");
    let mut values: Vec<sea_orm::Value> = vec![
        n.order_no.clone().into(),
        n.template.clone().into(),
        n.body.clone().into(),
        n.user_id.clone().into(),
        // Its sending continues the trace of the command that asked for it.
        ticket_platform::telemetry::current_traceparent().into(),
    ];
    values.extend(n.channels.iter().map(|&c| c.into()));
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "INSERT INTO notification (order_no, channel, recipient, template, body, status, \
               user_id, traceparent) \
             SELECT $1, channel, '', $2, $3, 'PENDING', $4, $5 \
             FROM (VALUES {channels}) AS queued (channel) \
             ON CONFLICT (order_no, channel, template) DO NOTHING"
        ),
        values,
    ))
    .await?;
    Ok(Answer::ok(
        format!("{} for order {} queued", n.channels.join(", "), n.order_no),
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
                channels: Vec::new(),
            })),
        }
    }

    /// A command naming `channels` (the `NOTIFY` form).
    fn on(channels: &[&str]) -> Command {
        let mut c = command("T1", "", "u1", "purchase_confirmed");
        if let Some(Body::Notify(notify)) = &mut c.body {
            notify.channels = channels.iter().map(|c| c.to_string()).collect();
        }
        c
    }

    #[test]
    fn a_notification_is_queued_with_its_event_line() {
        let (n, tag) = notification(&command("T1", "EMAIL", "u1", "purchase_confirmed"))
            .expect("a valid notification");
        assert_eq!(tag, tag::EMAIL);
        assert_eq!(n.user_id, "u1");
        assert_eq!(n.body, "Tickets confirmed for order T1.");
        assert_eq!(n.channels, [tag::EMAIL]);
    }

    #[test]
    fn a_notification_on_several_channels_is_one_notify_command_naming_each_once() {
        let (n, tag) = notification(&on(&["SMS", "EMAIL", "PUSH", "SMS"])).expect("valid");
        assert_eq!(tag, tag::NOTIFY);
        assert_eq!(n.channels, [tag::SMS, tag::EMAIL, tag::PUSH]);
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
        assert_eq!(
            reason(&on(&["SMS", "FAX"])),
            Err(r#"channel "FAX" is not SMS, EMAIL or PUSH"#.into())
        );
        assert!(reason(&on(&[])).is_err_and(|e| e.contains("names no channel")));
        let mut both = on(&["SMS"]);
        if let Some(Body::Notify(notify)) = &mut both.body {
            notify.channel = "EMAIL".into();
        }
        assert!(reason(&both).is_err_and(|e| e.contains("both channel and channels")));
        let mut confirm = command("T1", "SMS", "u1", "purchase_confirmed");
        confirm.body = Some(Body::OrderConfirm(OrderConfirm::default()));
        assert!(reason(&confirm).is_err_and(|e| e.contains("notifications only")));
    }
}

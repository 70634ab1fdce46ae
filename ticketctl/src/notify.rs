//! `ticketctl notify failed|retry`: the notifications that spent their attempts, and sending
//! one again, through notify-svc's `NotificationService`.

use ticket_proto::notify::v1 as pb;
use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;

use crate::{AdminToken, admin};

#[derive(clap::Args)]
pub struct Args {
    /// notify-svc's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50054", global = true)]
    addr: String,
    #[command(flatten)]
    admin: AdminToken,
    #[command(subcommand)]
    command: NotifyCommand,
}

#[derive(clap::Subcommand)]
pub enum NotifyCommand {
    /// The FAILED notifications, oldest first, with their last error.
    Failed {
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Send a FAILED notification again, with a fresh budget of attempts.
    Retry {
        order_no: String,
        /// SMS, EMAIL or PUSH.
        channel: String,
        #[arg(default_value = "purchase_confirmed")]
        template: String,
    },
}

fn channel_named(name: &str) -> anyhow::Result<pb::Channel> {
    match name.to_ascii_uppercase().as_str() {
        "SMS" => Ok(pb::Channel::Sms),
        "EMAIL" => Ok(pb::Channel::Email),
        "PUSH" => Ok(pb::Channel::Push),
        other => anyhow::bail!("channel {other:?} is not SMS, EMAIL or PUSH"),
    }
}

fn print(n: &pb::Notification) {
    println!(
        "{}  {:<5}  {:<20}  {:<8}  attempts {}  to {}",
        n.order_no,
        n.channel().as_str_name().trim_start_matches("CHANNEL_"),
        n.template,
        n.status,
        n.attempts,
        n.recipient
    );
    if !n.last_error.is_empty() {
        println!("  last error: {}", n.last_error);
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = NotificationServiceClient::new(crate::traced("notify-svc", &args.addr).await?);
    match args.command {
        NotifyCommand::Failed { limit } => {
            let failed = client
                .list_failed_notifications(admin(
                    pb::ListFailedNotificationsRequest { limit },
                    &args.admin.token,
                )?)
                .await?
                .into_inner()
                .notifications;
            if failed.is_empty() {
                println!("no failed notifications");
            }
            failed.iter().for_each(print);
        }
        NotifyCommand::Retry {
            order_no,
            channel: name,
            template,
        } => {
            let request = pb::RetryNotificationRequest {
                order_no,
                channel: channel_named(&name)? as i32,
                template,
            };
            let notification = client
                .retry_notification(admin(request, &args.admin.token)?)
                .await?
                .into_inner();
            print(&notification);
            println!("sent again: it is PENDING until its next attempt");
        }
    }
    Ok(())
}

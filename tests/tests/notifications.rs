//! notify-svc's delivery log against real providers' endpoints (HTTP receivers on sockets of
//! their own, an SMTP server: aiosmtpd) and order-svc's contacts: each notification is sent
//! once, outside any transaction, retried with backoff, FAILED once its attempts are spent,
//! and sent again by an operator's `RetryNotification`.

#![recursion_limit = "512"]

use std::time::Duration;

use e2e::admin_port::Scrape;
use e2e::http_receiver::HttpReceiver;
use e2e::order::OrderApp;
use e2e::running::Running;
use e2e::smtp_server::SmtpServer;
use e2e::stock::{StockApp, admin};
use ticket_proto::notify::v1 as pb;
use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use ticket_proto::saga::v1::{Command, Notify, ReplyOutcome};
use tonic::Code;
use tonic::transport::Channel;

const PHONE: &str = "+14155550123";
const EMAIL: &str = "reachable@example.com";
const TOKEN: &str = "device-token-1";

/// order-svc (with its stock-svc) and a notify-svc whose SMS and push go to `sms` and `push`,
/// with `max_attempts` a few milliseconds apart.
struct Setup {
    stock: StockApp,
    orders: OrderApp,
    notify: Running,
    tier: i64,
}

impl Setup {
    async fn start(sms: &HttpReceiver, push: &HttpReceiver, max_attempts: i32) -> Self {
        Self::start_with(sms, push, None, max_attempts, false).await
    }

    /// [`Setup::start`], e-mail going to `smtp` when given; with `orders_away`, notify-svc
    /// asks for contacts at an address where nothing answers.
    async fn start_with(
        sms: &HttpReceiver,
        push: &HttpReceiver,
        smtp: Option<&SmtpServer>,
        max_attempts: i32,
        orders_away: bool,
    ) -> Self {
        let stock = StockApp::start().await;
        let orders = OrderApp::start(&stock).await;
        let tier = stock.tier(100, 4).await.tier_id;
        let mut config = notify_svc::Config::with_service(e2e::service_config(
            "notify-svc",
            e2e::fresh_database_config("t_notify_").await,
            stock.messaging.clone(),
        ));
        config.orders_addr = if orders_away {
            format!("http://127.0.0.1:{}", e2e::free_port())
        } else {
            format!("http://{}", orders.addr)
        };
        config.catalog_addr = format!("http://{}", stock.addr);
        let provider = |url: String, authorization: Option<String>| {
            let provider =
                notify_svc::channels::HttpProvider::new(url, authorization, Duration::from_secs(2))
                    .expect("a provider");
            notify_svc::channels::Channel::Http(provider)
        };
        config.channels.sms = provider(sms.url("/sms"), Some("Bearer sms-key".into()));
        config.channels.push = provider(push.url("/push"), None);
        if let Some(smtp) = smtp {
            config.channels.email = smtp.channel();
        }
        config.delivery.max_attempts = max_attempts;
        config.delivery.backoff = Duration::from_millis(50);
        config.delivery.max_backoff = Duration::from_millis(100);
        config.delivery.poll = Duration::from_millis(50);
        let app = notify_svc::Application::build(config)
            .await
            .expect("notify-svc starts");
        let admin = app.admin_addr();
        let notify = Running::spawn(app.local_addr(), |stopped| app.run_until_stopped(stopped))
            .await
            .admin_at(admin);
        Self {
            stock,
            orders,
            notify,
            tier,
        }
    }

    /// An order of `user` with a contact (phone and push token, or none).
    async fn order(&self, user: &str, contact: bool) -> String {
        let request = order_pb::CreateOrderRequest {
            user_id: user.into(),
            tier_id: self.tier,
            quantity: 1,
            request_id: format!("r-{user}"),
            wait_for_decision: false,
            contact: contact.then(|| order_pb::Contact {
                email: EMAIL.into(),
                phone: PHONE.into(),
                push_token: TOKEN.into(),
            }),
        };
        self.orders
            .orders()
            .create_order(request)
            .await
            .expect("create")
            .into_inner()
            .order_no
    }

    fn client(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.notify.channel.clone())
    }

    /// notify-svc's command `channel` for `order_no` of `user`, through `Participant.Execute`.
    async fn command(&self, order_no: &str, user: &str, channel: &str) {
        let notify = Notify {
            channel: channel.into(),
            user_id: user.into(),
            template: "purchase_confirmed".into(),
            channels: Vec::new(),
        };
        self.execute(order_no, &format!("NOTIFY_{channel}"), notify)
            .await;
    }

    /// notify-svc's `NOTIFY` command on `channels`, as the purchase sends it.
    async fn command_on(&self, order_no: &str, user: &str, channels: &[&str]) {
        let notify = Notify {
            channel: String::new(),
            user_id: user.into(),
            template: "purchase_confirmed".into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        };
        self.execute(order_no, "NOTIFY", notify).await;
    }

    async fn execute(&self, order_no: &str, step: &str, notify: Notify) {
        let command = Command {
            saga_id: format!("saga-{order_no}"),
            order_no: order_no.into(),
            step: step.into(),
            attempt: 1,
            body: Some(Body::Notify(notify)),
        };
        let reply = ParticipantClient::new(self.notify.channel.clone())
            .execute(e2e::auth::service(command))
            .await
            .expect("execute")
            .into_inner();
        assert_eq!(reply.outcome(), ReplyOutcome::Ok, "{reply:?}");
    }

    /// The notification of `order_no` on `channel` once its status is `status`.
    async fn reaches(
        &self,
        order_no: &str,
        channel: pb::Channel,
        status: &str,
    ) -> pb::Notification {
        e2e::eventually(Duration::from_secs(20), status, || async {
            self.listed(order_no)
                .await
                .into_iter()
                .find(|n| n.channel() == channel && n.status == status)
        })
        .await
    }

    /// The notifications of `order_no`, as `ListNotifications` answers.
    async fn listed(&self, order_no: &str) -> Vec<pb::Notification> {
        self.client()
            .list_notifications(pb::ListNotificationsRequest {
                order_no: order_no.into(),
            })
            .await
            .expect("list")
            .into_inner()
            .notifications
    }

    async fn stop(self) {
        self.notify.stop().await;
        self.orders.stop().await;
        self.stock.stop(&[self.tier]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_fails_twice_then_answers_gets_the_message_once() {
    let sms = HttpReceiver::start(&[503, 503], 200).await;
    let push = HttpReceiver::start(&[], 200).await;
    let setup = Setup::start(&sms, &push, 5).await;
    let order_no = setup.order("reachable", true).await;
    // The command arrives twice (a redelivery); the notification is still one.
    setup.command(&order_no, "reachable", "SMS").await;
    setup.command(&order_no, "reachable", "SMS").await;
    setup.command(&order_no, "reachable", "PUSH").await;

    let sent = setup.reaches(&order_no, pb::Channel::Sms, "SENT").await;
    assert_eq!(sent.attempts, 3);
    assert_eq!(sent.provider_id, "msg-3");
    assert_eq!(sent.recipient, "+14*******23", "masked");
    assert_eq!(sent.user_id, "reachable");
    assert!(sent.last_error.contains("503"), "{sent:?}");
    assert!(
        sent.last_error.contains("+14*******23") && !sent.last_error.contains("4155550123"),
        "the provider's error quotes the number; it is kept masked: {sent:?}"
    );
    assert!(sent.sent_at.is_some());
    let pushed = setup.reaches(&order_no, pb::Channel::Push, "SENT").await;
    assert_eq!(pushed.attempts, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let calls = sms.received();
    assert_eq!(
        calls.len(),
        3,
        "two failures and one success, nothing after"
    );
    for call in &calls {
        assert_eq!(call.path, "/sms");
        assert_eq!(
            call.headers.get("authorization").map(String::as_str),
            Some("Bearer sms-key")
        );
        assert_eq!(
            call.headers.get("idempotency-key"),
            calls[0].headers.get("idempotency-key"),
            "every attempt carries the same key"
        );
        let body: serde_json::Value = serde_json::from_str(&call.body).expect("JSON");
        assert_eq!(body["to"], PHONE);
        assert!(body["body"].as_str().is_some_and(|b| b.contains(&order_no)));
    }
    let pushes = push.received();
    assert_eq!(pushes.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&pushes[0].body).expect("JSON");
    assert_eq!(body["to"], TOKEN);
    setup.stop().await;
}

/// One `NOTIFY` command queues the buyer's notification on each channel it names, once: the
/// command repeated, or a channel queued before by a command of its own, sends nothing twice.
/// The notifications it queued ask order-svc for the buyer's contact once, together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_on_every_channel_sends_each_once() {
    let sms = HttpReceiver::start(&[], 200).await;
    let push = HttpReceiver::start(&[], 200).await;
    let setup = Setup::start(&sms, &push, 3).await;
    let order_no = setup.order("everyone", true).await;
    setup.command(&order_no, "everyone", "SMS").await;
    setup.reaches(&order_no, pb::Channel::Sms, "SENT").await;
    for _ in 0..2 {
        setup
            .command_on(&order_no, "everyone", &["SMS", "EMAIL", "PUSH"])
            .await;
    }
    for channel in [pb::Channel::Sms, pb::Channel::Email, pb::Channel::Push] {
        let sent = setup.reaches(&order_no, channel, "SENT").await;
        assert_eq!(sent.attempts, 1, "{sent:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sms.received().len(),
        1,
        "the SMS queued before is not sent again"
    );
    assert_eq!(push.received().len(), 1);
    let listed = setup.listed(&order_no).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let contacts = r#"grpc_client_requests_total{method="order-svc/ticket.order.v1.ContactService/GetContact",code="OK"}"#;
    assert_eq!(
        Scrape::of(setup.notify.admin).await.value(contacts),
        2.0,
        "one lookup for the SMS, one for the e-mail and the push sent together"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_always_fails_leaves_it_failed_until_an_operator_sends_it_again() {
    let sms = HttpReceiver::start(&[], 500).await;
    let push = HttpReceiver::start(&[], 200).await;
    let setup = Setup::start(&sms, &push, 3).await;
    let order_no = setup.order("unlucky", true).await;
    setup.command(&order_no, "unlucky", "SMS").await;

    let failed = setup.reaches(&order_no, pb::Channel::Sms, "FAILED").await;
    assert_eq!(failed.attempts, 3);
    assert!(failed.last_error.contains("500"), "{failed:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.received().len(), 3, "no attempt after the budget");
    let listed = setup
        .client()
        .list_failed_notifications(admin(pb::ListFailedNotificationsRequest { limit: 0 }))
        .await
        .expect("failed notifications")
        .into_inner()
        .notifications;
    assert_eq!(
        listed
            .iter()
            .map(|n| n.order_no.as_str())
            .collect::<Vec<_>>(),
        vec![order_no.as_str()]
    );

    let retry = pb::RetryNotificationRequest {
        order_no: order_no.clone(),
        channel: pb::Channel::Sms as i32,
        template: "purchase_confirmed".into(),
    };
    let anyone = setup
        .client()
        .retry_notification(retry.clone())
        .await
        .expect_err("without the admin token");
    assert_eq!(anyone.code(), Code::Unauthenticated);
    sms.answer(200);
    setup
        .client()
        .retry_notification(admin(retry.clone()))
        .await
        .expect("sent again");
    let sent = setup.reaches(&order_no, pb::Channel::Sms, "SENT").await;
    assert_eq!(sent.attempts, 1, "a fresh budget");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.received().len(), 4, "delivered once after the retry");
    let again = setup
        .client()
        .retry_notification(admin(retry))
        .await
        .expect_err("a sent notification is not retried");
    assert_eq!(again.code(), Code::FailedPrecondition);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_without_a_contact_on_a_channel_is_skipped_not_retried() {
    let sms = HttpReceiver::start(&[], 200).await;
    let push = HttpReceiver::start(&[], 200).await;
    let setup = Setup::start(&sms, &push, 5).await;
    let order_no = setup.order("silent", false).await;
    setup.command(&order_no, "silent", "SMS").await;
    let skipped = setup.reaches(&order_no, pb::Channel::Sms, "SKIPPED").await;
    assert_eq!(skipped.last_error, "the buyer gave no phone number");
    assert!(sms.received().is_empty());
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_reaches_a_real_smtp_server_once_with_a_text_and_an_html_part() {
    let smtp = SmtpServer::start().await;
    let sms = HttpReceiver::start(&[], 200).await;
    let push = HttpReceiver::start(&[], 200).await;
    let setup = Setup::start_with(&sms, &push, Some(&smtp), 5, false).await;
    let order_no = setup.order("reachable", true).await;
    setup.command(&order_no, "reachable", "EMAIL").await;
    setup.command(&order_no, "reachable", "EMAIL").await;

    let sent = setup.reaches(&order_no, pb::Channel::Email, "SENT").await;
    assert_eq!(sent.recipient, "r***@example.com", "masked");
    assert_eq!(sent.attempts, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one e-mail for a command delivered twice");
    let mail = &mails[0];
    assert_eq!(mail.header("To").as_deref(), Some(EMAIL));
    assert_eq!(
        mail.header("Subject"),
        Some(format!(
            "Your tickets for Flash Sale Night: order {order_no}"
        ))
    );
    assert_eq!(mail.header("Message-ID"), Some(sent.provider_id.clone()));
    assert!(
        mail.header("Content-Type")
            .is_some_and(|t| t.starts_with("multipart/alternative")),
        "{mail:?}"
    );
    assert!(mail.raw.contains("text/plain") && mail.raw.contains("text/html"));
    assert!(
        mail.raw.matches(order_no.as_str()).count() >= 3,
        "{}",
        mail.raw
    );
    // The show, its venue and the order's amount (one ticket at 125.00), in both parts.
    for value in ["Flash Sale Night", "Arena", "125.00"] {
        assert!(
            mail.raw.matches(value).count() >= 2,
            "{value}: {}",
            mail.raw
        );
    }
    assert_eq!(
        sent.body,
        mail.text(),
        "the log keeps the text that was sent"
    );
    setup.stop().await;
}

/// With order-svc out of reach, the buyer's contact cannot be asked for: the notification waits for it
/// without spending its attempts (one attempt here: a spent one would leave it FAILED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_waits_for_order_svc_without_spending_its_attempts() {
    let sms = HttpReceiver::start(&[], 200).await;
    let push = HttpReceiver::start(&[], 200).await;
    let setup = Setup::start_with(&sms, &push, None, 1, true).await;
    let order_no = setup.order("patient", true).await;
    setup.command(&order_no, "patient", "SMS").await;
    let waiting = e2e::eventually(Duration::from_secs(20), "a postponed attempt", || async {
        setup
            .listed(&order_no)
            .await
            .into_iter()
            .find(|n| n.status == "PENDING" && n.last_error.contains("order-svc"))
    })
    .await;
    assert_eq!(waiting.attempts, 0, "{waiting:?}");
    assert!(sms.received().is_empty());
    setup.stop().await;
}

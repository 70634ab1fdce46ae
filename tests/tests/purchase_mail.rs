//! Whole purchases tell their buyers through real providers' endpoints — e-mail through an SMTP
//! server (aiosmtpd), SMS and push through HTTP receivers — with every command, reply and event
//! of every service delivered twice: one message per channel per confirmed purchase (the
//! e-mail naming its show, session, tier and amount), one per order cancelled after it was
//! reserved (naming its reason in words).

use std::time::Duration;

use e2e::http_receiver::HttpReceiver;
use e2e::saga::{pay, settings};
use e2e::smtp_server::{Mail, SmtpServer};
use e2e::system::System;
use orchestrator::dispatch::Transport;
use ticket_proto::order::v1 as pb;

fn contact(buyer: &str, n: usize) -> Option<pb::Contact> {
    Some(pb::Contact {
        email: format!("{buyer}@example.com"),
        phone: format!("+1415555010{n}"),
        push_token: format!("device-{buyer}"),
    })
}

/// The one e-mail `buyer` received.
fn mail_to(mails: &[Mail], buyer: &str) -> Mail {
    let to = format!("{buyer}@example.com");
    let theirs: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.header("To").as_deref() == Some(to.as_str()))
        .collect();
    assert_eq!(theirs.len(), 1, "one e-mail to {to}: {mails:#?}");
    theirs[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_buyer_is_told_once_per_channel_of_a_purchase_or_a_cancellation_though_every_message_arrives_twice()
 {
    let smtp = SmtpServer::start().await;
    let (sms, push) = (
        HttpReceiver::start(&[], 200).await,
        HttpReceiver::start(&[], 200).await,
    );
    let provider = |url: String| {
        notify_svc::channels::Channel::Http(
            notify_svc::channels::HttpProvider::new(url, None, Duration::from_secs(2))
                .expect("a provider"),
        )
    };
    let email = smtp.channel();
    let (sms_url, push_url) = (sms.url("/sms"), push.url("/push"));
    let system = System::start_notifying(
        e2e::messaging_config(3),
        settings(Duration::from_secs(6)),
        Transport::RocketMq,
        true,
        |config| {
            config.channels.email = email;
            config.channels.sms = provider(sms_url);
            config.channels.push = provider(push_url);
        },
    )
    .await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let mut orders = Vec::new();
    for (n, (buyer, quantity)) in [("ann", 2), ("ben", 1), ("cat", 1)].into_iter().enumerate() {
        let order = system
            .order
            .create_for(buyer, tier, quantity, buyer, contact(buyer, n))
            .await
            .expect("create");
        system.saga_reaches(&order.order_no, "WAITING").await;
        orders.push(system.order.get(&order.order_no).await);
    }
    let [bought, dropped, expired] = &orders[..] else {
        unreachable!("three orders");
    };
    pay(&system, bought).await;
    system.order.cancel(&dropped.order_no).await;
    // cat lets the payment deadline pass.
    system.saga_reaches(&bought.order_no, "COMPLETED").await;
    system.saga_reaches(&dropped.order_no, "COMPENSATED").await;
    system.saga_reaches(&expired.order_no, "COMPENSATED").await;
    let confirmed = system.told(&bought.order_no, "purchase_confirmed").await;
    system.told(&dropped.order_no, "order_cancelled").await;
    system.told(&expired.order_no, "order_cancelled").await;
    // The duplicates still on their way must send nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3, "one e-mail per order: {mails:#?}");
    // One SMS and one push per order, to that buyer, naming that order.
    for (n, order) in [bought, dropped, expired].into_iter().enumerate() {
        let buyer = ["ann", "ben", "cat"][n];
        for (receiver, to) in [
            (&sms, format!("+1415555010{n}")),
            (&push, format!("device-{buyer}")),
        ] {
            let theirs: Vec<_> = receiver
                .received()
                .into_iter()
                .filter(|r| r.body.contains(&format!("\"to\":\"{to}\"")))
                .collect();
            assert_eq!(theirs.len(), 1, "one message to {to}: {theirs:#?}");
            assert!(theirs[0].body.contains(&order.order_no), "{:?}", theirs[0]);
        }
    }
    assert_eq!(sms.received().len(), 3);
    assert_eq!(push.received().len(), 3);

    let ann = mail_to(&mails, "ann");
    assert_eq!(
        ann.header("Subject"),
        Some(format!(
            "Your tickets for Flash Sale Night: order {}",
            bought.order_no
        ))
    );
    let text = ann.text();
    for value in ["Flash Sale Night", "Arena", "250.00", "Tickets:  2", "UTC"] {
        assert!(text.contains(value), "{value} missing: {text}");
    }
    assert!(ann.raw.contains("text/html"), "{}", ann.raw);
    let email = confirmed
        .iter()
        .find(|n| n.channel() == ticket_proto::notify::v1::Channel::Email)
        .expect("the e-mail's row");
    assert_eq!(email.recipient, "a***@example.com");
    assert_eq!(ann.header("Message-ID"), Some(email.provider_id.clone()));

    for (buyer, order, reason) in [
        ("ben", dropped, "you cancelled it"),
        (
            "cat",
            expired,
            "the payment was not made before its deadline",
        ),
    ] {
        let mail = mail_to(&mails, buyer);
        assert_eq!(
            mail.header("Subject"),
            Some(format!(
                "Your order {} for Flash Sale Night was cancelled",
                order.order_no
            ))
        );
        let text = mail.text();
        assert!(text.contains(&format!("cancelled: {reason}.")), "{text}");
        assert!(text.contains("125.00"), "{text}");
    }
    system.stop(&[tier]).await;
}

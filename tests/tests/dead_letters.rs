//! The system's dead letters in one place: a message a participant rejects (published through
//! its outbox with the reason) and a message whose redeliveries ran out in some group's
//! `%DLQ%` both reach the orchestrator's record, listable and redrivable whichever service's
//! group it was; one that fails again comes back as the same record, seen once more.

#![recursion_limit = "512"]

use std::sync::Arc;
use std::time::Duration;

use e2e::saga::settings;
use e2e::stock::admin;
use e2e::system::System;
use orchestrator::dispatch::Transport;
use ticket_platform::messaging::{
    Consumer, ConsumerSettings, HandleError, IncomingMessage, MessageHandler, MessagingRuntime,
    OutgoingMessage, Publisher, tag, topic,
};
use ticket_proto::saga::v1 as saga_pb;

/// The dead letter of `message_id`, once the orchestrator has seen it `times` times.
async fn dead_letter(system: &System, message_id: &str, times: i32) -> saga_pb::DeadLetter {
    e2e::eventually(
        Duration::from_secs(60),
        &format!("dead letter {message_id} seen {times} time(s)"),
        || async {
            let page = system
                .admin()
                .list_dead_letters(admin(saga_pb::ListDeadLettersRequest {
                    page_size: 500,
                    page_token: String::new(),
                }))
                .await
                .ok()?
                .into_inner();
            page.dead_letters
                .into_iter()
                .find(|d| d.message_id == message_id && d.times_seen == times)
        },
    )
    .await
}

/// `ticketctl dlq <args>` against the system's orchestrator.
fn ticketctl(system: &System, args: &[&str]) -> String {
    let output = std::process::Command::new(e2e::binary("ticketctl"))
        .arg("dlq")
        .args(args)
        .args(["--addr", &format!("http://{}", system.orchestrator.addr)])
        .env("TICKET_ADMIN_TOKEN", e2e::stock::TOKEN)
        .output()
        .expect("run ticketctl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// The trace a message was published in.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_stock_svc_rejects_is_one_record_at_the_orchestrator_and_comes_back_when_redriven()
 {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let runtime = MessagingRuntime::start(system.stock().messaging.clone()).expect("runtime");
    let publisher = Publisher::start(Arc::clone(&runtime), "test-garbage")
        .await
        .expect("publisher");
    let garbage = OutgoingMessage {
        payload: vec![0xff, 0x01, 0xff],
        ..OutgoingMessage::new(
            topic::STOCK,
            tag::STOCK_DEDUCT,
            "T-garbage",
            &saga_pb::Command::default(),
        )
        .with_saga("saga-of-the-garbage", "STOCK_DEDUCT", 2)
        .with_traceparent(Some(TRACEPARENT.into()))
    };
    let id = garbage.message_id.to_string();
    e2e::send(&publisher, &garbage).await;

    let first = dead_letter(&system, &id, 1).await;
    assert_eq!(
        (
            first.consumer_group.as_str(),
            first.topic.as_str(),
            first.source.as_str()
        ),
        ("stock-svc", "STOCK_TOPIC", "REJECTED"),
        "{first:?}"
    );
    assert_eq!(first.key, "T-garbage");
    assert!(!first.reason.is_empty() && !first.redriven, "{first:?}");
    let listed = ticketctl(&system, &["list"]);
    assert!(
        listed.contains(&id) && listed.contains("stock-svc"),
        "{listed}"
    );

    let properties = |letter: &saga_pb::DeadLetter| -> serde_json::Value {
        serde_json::from_str(&letter.properties).expect("properties are JSON")
    };
    let sent_with = serde_json::json!({
        "saga_id": "saga-of-the-garbage",
        "step": "STOCK_DEDUCT",
        "attempt": "2",
        "traceparent": TRACEPARENT,
    });
    assert_eq!(properties(&first), sent_with);

    // Redriven, it fails again at stock-svc: the same record, seen twice, no longer redriven;
    // it travelled again in its saga's step and attempt, in its trace.
    let shown = ticketctl(&system, &["redrive", &id]);
    assert!(shown.contains("(redriven)"), "{shown}");
    let again = dead_letter(&system, &id, 2).await;
    assert!(!again.redriven, "{again:?}");
    assert_eq!(
        properties(&again),
        sent_with,
        "what the redriven message carried"
    );
    let shown = ticketctl(&system, &["show", &id]);
    assert!(shown.contains("seen 2 time(s)"), "{shown}");
    publisher.shutdown().await;
    runtime.shutdown().await;
    system.stop(&[]).await;
}

/// A handler that never succeeds.
struct Doomed;

impl MessageHandler for Doomed {
    async fn handle(&self, _message: IncomingMessage) -> Result<(), HandleError> {
        Err(HandleError::Retry("the handler is down".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_redeliveries_ran_out_is_recorded_from_its_groups_dlq() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let runtime = MessagingRuntime::start(system.stock().messaging.clone()).expect("runtime");
    let doomed = Consumer::start(
        Arc::clone(&runtime),
        ConsumerSettings::new(e2e::DOOMED_GROUP).subscribe("DOOMED_TOPIC", &["*"]),
        Doomed,
    )
    .await
    .expect("consumer");
    let publisher = Publisher::start(Arc::clone(&runtime), "test-doomed")
        .await
        .expect("publisher");
    let message = OutgoingMessage::new(
        "DOOMED_TOPIC",
        "WORK",
        "T-doomed",
        &saga_pb::OrderCancel { reason: "x".into() },
    )
    .with_saga("saga-1", "WORK", 1);
    let id = message.message_id.to_string();
    e2e::send(&publisher, &message).await;

    let letter = dead_letter(&system, &id, 1).await;
    assert_eq!(
        (letter.consumer_group.as_str(), letter.source.as_str()),
        (e2e::DOOMED_GROUP, "DLQ"),
        "{letter:?}"
    );
    assert_eq!(
        (letter.topic.as_str(), letter.tag.as_str()),
        ("DOOMED_TOPIC", "WORK")
    );
    assert!(letter.properties.contains("saga-1"), "{letter:?}");
    doomed.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
    system.stop(&[]).await;
}

//! The outbox relay is woken by a commit of outbox rows in its process, not by its poll: with
//! a poll of two minutes, every committed row is published within seconds, one commit at a
//! time and many in a row (some of them while a round is running).

use std::sync::Arc;
use std::time::Duration;

use e2e::{eventually, fresh_platform_database, messaging, unique};
use sea_orm::{DatabaseConnection, TransactionTrait};
use ticket_platform::messaging::{OutgoingMessage, Publisher, tag, topic};
use ticket_platform::outbox::{self, Relay, RelaySettings};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{Command, StockDeduct};

/// Far longer than any wait below: only a wake publishes in time.
const POLL: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(10);

fn deduct(order_no: &str) -> OutgoingMessage {
    let command = Command {
        saga_id: format!("saga-{order_no}"),
        step: tag::STOCK_DEDUCT.into(),
        attempt: 1,
        order_no: order_no.into(),
        body: Some(Body::StockDeduct(StockDeduct {
            tier_id: 1,
            user_id: "u-1".into(),
            quantity: 1,
        })),
    };
    OutgoingMessage::new(topic::STOCK, tag::STOCK_DEDUCT, order_no, &command)
}

/// Commits one row and tells the relay, as a service does after its commit.
async fn commit(db: &DatabaseConnection, order_no: &str) {
    let txn = db.begin().await.expect("begin");
    outbox::enqueue(&txn, &[deduct(order_no)])
        .await
        .expect("enqueue");
    txn.commit().await.expect("commit");
    outbox::committed();
}

async fn all_sent(db: &DatabaseConnection, what: &str) {
    eventually(WAIT, what, || async {
        (outbox::pending(db).await.expect("pending") == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_wakes_the_relay_without_its_poll() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = Publisher::start(Arc::clone(&runtime), &unique("producer-"))
        .await
        .expect("producer starts");
    publisher
        .ensure_topics(&[topic::STOCK])
        .await
        .expect("topics are created");
    let publisher = Arc::new(publisher);
    let relay = Relay::spawn(
        db.clone(),
        Arc::clone(&publisher),
        RelaySettings {
            idle_poll: POLL,
            ..RelaySettings::default()
        },
    );
    // The relay's first round finds nothing; from then on it waits for a commit or its poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    commit(&db, "ORD-WAKE-0").await;
    all_sent(&db, "the row committed while the relay waited").await;

    // Commits one after another, some while a round claims or publishes the one before: none
    // waits for the poll.
    for i in 1..=60u64 {
        commit(&db, &format!("ORD-WAKE-{i}")).await;
        tokio::time::sleep(Duration::from_millis(i % 7)).await;
    }
    all_sent(&db, "every row committed during the relay's rounds").await;

    relay.stop().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

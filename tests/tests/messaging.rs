//! The platform's messaging against the real broker: tag filtering, redelivery, the DLQ, the
//! outbox relay and the inbox. Each test has a RocketMQ namespace and a database of its own.

#![recursion_limit = "512"]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{eventually, fresh_platform_database, messaging, messaging_config, unique};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use ticket_platform::messaging::{
    Consumer, ConsumerSettings, HandleError, IncomingMessage, MessageHandler, MessagingConfig,
    MessagingRuntime, OutgoingMessage, Publisher, topic,
};
use ticket_platform::outbox::{self, Relay, RelaySettings};
use ticket_platform::{dead_letter, inbox};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{Command, StockConfirm, StockDeduct};

const WAIT: Duration = Duration::from_secs(60);

/// Records every delivery; fails the first `fail_first` deliveries of each message (or all);
/// writes its effect through the inbox.
#[derive(Clone)]
struct Recorder {
    db: DatabaseConnection,
    group: String,
    fail_first: u32,
    always_fail: bool,
    decode: bool,
    deliveries: Arc<Mutex<HashMap<String, u32>>>,
    tags: Arc<Mutex<Vec<String>>>,
    /// (order number, queue id) of every delivery.
    queues: Arc<Mutex<Vec<(String, i32)>>>,
    /// Deliveries the broker marked as redeliveries (reconsume times above zero).
    redeliveries: Arc<AtomicUsize>,
}

impl Recorder {
    fn new(db: &DatabaseConnection, group: &str) -> Self {
        Self {
            db: db.clone(),
            group: group.to_owned(),
            fail_first: 0,
            always_fail: false,
            decode: false,
            deliveries: Arc::default(),
            tags: Arc::default(),
            queues: Arc::default(),
            redeliveries: Arc::default(),
        }
    }

    fn deliveries_of(&self, message_id: &str) -> u32 {
        self.deliveries
            .lock()
            .expect("lock")
            .get(message_id)
            .copied()
            .unwrap_or(0)
    }

    fn delivered(&self) -> usize {
        self.deliveries.lock().expect("lock").len()
    }

    fn tags(&self) -> Vec<String> {
        self.tags.lock().expect("lock").clone()
    }
}

impl MessageHandler for Recorder {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let attempt = {
            let mut deliveries = self.deliveries.lock().expect("lock");
            let n = deliveries.entry(message.message_id.clone()).or_default();
            *n += 1;
            *n
        };
        self.tags.lock().expect("lock").push(message.tag.clone());
        self.queues
            .lock()
            .expect("lock")
            .push((message.key.clone(), message.queue_id));
        if message.reconsume_times > 0 {
            self.redeliveries.fetch_add(1, Ordering::Relaxed);
        }
        if self.decode {
            message.decode::<Command>()?;
        }
        if self.always_fail || attempt <= self.fail_first {
            return Err(HandleError::Retry(format!(
                "failing delivery {attempt} on purpose"
            )));
        }
        let retry = |e: sea_orm::DbErr| HandleError::Retry(e.to_string());
        if let Some(txn) = inbox::begin(&self.db, &self.group, &message.message_id)
            .await
            .map_err(retry)?
        {
            txn.execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "INSERT INTO effect (message_id, times) VALUES ($1, 1) \
                 ON CONFLICT (message_id) DO UPDATE SET times = effect.times + 1",
                [message.message_id.clone().into()],
            ))
            .await
            .map_err(retry)?;
            txn.commit().await.map_err(retry)?;
        }
        Ok(())
    }
}

async fn effect_times(db: &DatabaseConnection, message_id: &str) -> i32 {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT times FROM effect WHERE message_id = $1",
            [message_id.into()],
        ))
        .await
        .expect("query effect");
    row.map_or(0, |r| r.try_get::<i32>("", "times").expect("times"))
}

async fn effect_summary(db: &DatabaseConnection) -> (i64, i32) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n, coalesce(max(times), 0) AS most FROM effect",
        ))
        .await
        .expect("query effect")
        .expect("one row");
    (
        row.try_get("", "n").expect("n"),
        row.try_get("", "most").expect("most"),
    )
}

async fn publisher(runtime: &Arc<MessagingRuntime>) -> Arc<Publisher> {
    let publisher = Publisher::start(Arc::clone(runtime), &unique("producer-"))
        .await
        .expect("producer starts");
    publisher
        .ensure_topics(&[topic::STOCK, topic::ORDER])
        .await
        .expect("topics are created");
    Arc::new(publisher)
}

fn command(order_no: &str, step: &str, body: Body) -> OutgoingMessage {
    let command = Command {
        saga_id: "saga-1".into(),
        order_no: order_no.into(),
        step: step.into(),
        attempt: 1,
        body: Some(body),
    };
    OutgoingMessage::new(topic::STOCK, step, order_no, &command).with_saga("saga-1", step, 1)
}

fn deduct(order_no: &str) -> OutgoingMessage {
    command(
        order_no,
        "STOCK_DEDUCT",
        Body::StockDeduct(StockDeduct {
            tier_id: 7,
            user_id: "u1".into(),
            quantity: 1,
        }),
    )
}

fn confirm(order_no: &str) -> OutgoingMessage {
    command(
        order_no,
        "STOCK_CONFIRM",
        Body::StockConfirm(StockConfirm { tier_id: 7 }),
    )
}

async fn consume(
    runtime: &Arc<MessagingRuntime>,
    recorder: &Recorder,
    topic: &str,
    tags: &[&str],
) -> Consumer {
    let settings = ConsumerSettings::new(&recorder.group)
        .subscribe(topic, tags)
        .dead_letters(recorder.db.clone());
    Consumer::start(Arc::clone(runtime), settings, recorder.clone())
        .await
        .expect("consumer starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_subscription_gets_its_tag_and_not_another() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = publisher(&runtime).await;
    let deducts = Recorder::new(&db, "deducts");
    let confirms = Recorder::new(&db, "confirms");
    let c1 = consume(&runtime, &deducts, topic::STOCK, &["STOCK_DEDUCT"]).await;
    let c2 = consume(&runtime, &confirms, topic::STOCK, &["STOCK_CONFIRM"]).await;

    let d = deduct("ORD-1");
    let c = confirm("ORD-1");
    publisher.publish(&d).await.expect("publish deduct");
    publisher.publish(&c).await.expect("publish confirm");

    eventually(WAIT, "the deduct to reach its group", || async {
        (deducts.deliveries_of(&d.message_id.to_string()) > 0).then_some(())
    })
    .await;
    eventually(WAIT, "the confirm to reach its group", || async {
        (confirms.deliveries_of(&c.message_id.to_string()) > 0).then_some(())
    })
    .await;
    // The confirm has been delivered to its own group, so the broker had it: the deduct group
    // would have seen it by now if the filter let it through.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(deducts.tags(), vec!["STOCK_DEDUCT".to_owned()]);
    assert_eq!(confirms.tags(), vec!["STOCK_CONFIRM".to_owned()]);
    c1.shutdown().await;
    c2.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_to_two_tags_gets_both() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = publisher(&runtime).await;
    let both = Recorder::new(&db, "both");
    let consumer = consume(
        &runtime,
        &both,
        topic::STOCK,
        &["STOCK_DEDUCT", "STOCK_CONFIRM"],
    )
    .await;

    publisher
        .publish_batch(&[deduct("ORD-2"), confirm("ORD-2")])
        .await
        .expect("publish");
    let tags = eventually(WAIT, "both tags", || async {
        let mut tags = both.tags();
        tags.sort();
        (tags.len() >= 2).then_some(tags)
    })
    .await;
    assert_eq!(
        tags,
        vec!["STOCK_CONFIRM".to_owned(), "STOCK_DEDUCT".to_owned()]
    );
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_of_one_order_share_one_queue() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = publisher(&runtime).await;
    let recorder = Recorder::new(&db, "queues");
    let consumer = consume(&runtime, &recorder, topic::STOCK, &["*"]).await;

    let orders: Vec<String> = (0..16).map(|i| format!("ORD-Q{i}")).collect();
    for round in 0..4 {
        // Single sends and batches both keep an order on its queue.
        let messages: Vec<_> = orders
            .iter()
            .map(|o| {
                if round % 2 == 0 {
                    deduct(o)
                } else {
                    confirm(o)
                }
            })
            .collect();
        if round < 2 {
            for m in &messages {
                publisher.publish(m).await.expect("publish");
            }
        } else {
            publisher
                .publish_batch(&messages)
                .await
                .expect("publish batch");
        }
    }
    let seen = eventually(WAIT, "all 64 messages", || async {
        let seen = recorder.queues.lock().expect("lock").clone();
        (seen.len() >= 64).then_some(seen)
    })
    .await;
    let mut queue_of: HashMap<String, i32> = HashMap::new();
    for (order, queue) in seen {
        let first = *queue_of.entry(order.clone()).or_insert(queue);
        assert_eq!(
            first, queue,
            "{order} was stored in queues {first} and {queue}"
        );
    }
    let distinct: std::collections::HashSet<i32> = queue_of.values().copied().collect();
    assert!(
        distinct.len() > 1,
        "16 orders spread over more than one queue: {queue_of:?}"
    );
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_twice_is_redelivered_and_its_effect_happens_once() {
    let db = fresh_platform_database().await;
    let runtime = messaging(5);
    let publisher = publisher(&runtime).await;
    let flaky = Recorder {
        fail_first: 2,
        ..Recorder::new(&db, "flaky")
    };
    let consumer = consume(&runtime, &flaky, topic::STOCK, &["*"]).await;

    let message = deduct("ORD-3");
    let id = message.message_id.to_string();
    publisher.publish(&message).await.expect("publish");
    eventually(WAIT, "the third delivery to succeed", || async {
        (effect_times(&db, &id).await > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        flaky.deliveries_of(&id),
        3,
        "two failures, then one success, then nothing more"
    );
    assert_eq!(effect_times(&db, &id).await, 1);
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_always_fails_puts_the_message_in_the_dlq() {
    let db = fresh_platform_database().await;
    let runtime = messaging(2);
    let publisher = publisher(&runtime).await;
    let doomed = Recorder {
        always_fail: true,
        ..Recorder::new(&db, "doomed")
    };
    let consumer = consume(&runtime, &doomed, topic::STOCK, &["*"]).await;
    let dlq_reader = Recorder::new(&db, "dlq-reader");
    let dlq = consume(&runtime, &dlq_reader, "%DLQ%doomed", &["*"]).await;

    let message = deduct("ORD-4");
    let id = message.message_id.to_string();
    publisher.publish(&message).await.expect("publish");
    eventually(WAIT, "the message in %DLQ%doomed", || async {
        (dlq_reader.deliveries_of(&id) > 0).then_some(())
    })
    .await;
    assert_eq!(
        doomed.deliveries_of(&id),
        3,
        "the first delivery and two redeliveries"
    );
    assert!(
        !inbox::contains(&db, "doomed", &id).await.expect("inbox"),
        "the failing group never completed it"
    );
    for c in [consumer, dlq] {
        c.shutdown().await;
    }
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_payload_is_dead_lettered_with_its_reason_and_not_retried() {
    let db = fresh_platform_database().await;
    let runtime = messaging(5);
    let publisher = publisher(&runtime).await;
    let strict = Recorder {
        decode: true,
        ..Recorder::new(&db, "strict")
    };
    let consumer = consume(&runtime, &strict, topic::STOCK, &["*"]).await;

    let mut garbage = deduct("ORD-5");
    garbage.payload = vec![0xff, 0xff, 0xff, 0x0f];
    let id = garbage.message_id.to_string();
    publisher.publish(&garbage).await.expect("publish");
    let reasons = eventually(WAIT, "a dead letter", || async {
        let reasons = dead_letter::reasons(&db, &id).await.expect("query");
        (!reasons.is_empty()).then_some(reasons)
    })
    .await;
    assert!(reasons[0].contains("not a valid Command"), "{reasons:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        strict.deliveries_of(&id),
        1,
        "a rejected message is not redelivered"
    );
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_delivered_twice_runs_its_effect_once() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = publisher(&runtime).await;
    publisher.set_duplicate_deliveries(true);
    let recorder = Recorder::new(&db, "twice");
    let consumer = consume(&runtime, &recorder, topic::STOCK, &["*"]).await;

    let message = deduct("ORD-6");
    let id = message.message_id.to_string();
    publisher.publish(&message).await.expect("publish");
    eventually(WAIT, "both copies", || async {
        (recorder.deliveries_of(&id) >= 2).then_some(())
    })
    .await;
    assert_eq!(recorder.deliveries_of(&id), 2);
    assert_eq!(effect_times(&db, &id).await, 1);
    assert!(inbox::contains(&db, "twice", &id).await.expect("inbox"));
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_row_is_published_once_across_a_relay_restart_and_a_rollback_publishes_nothing() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = publisher(&runtime).await;
    let recorder = Recorder::new(&db, "outbox-reader");
    let consumer = consume(&runtime, &recorder, topic::STOCK, &["*"]).await;

    // Committed while no relay runs.
    let committed = deduct("ORD-7");
    let txn = db.begin().await.expect("begin");
    outbox::enqueue(&txn, std::slice::from_ref(&committed))
        .await
        .expect("enqueue");
    txn.commit().await.expect("commit");
    // Rolled back: must never be published.
    let rolled_back = deduct("ORD-8");
    let txn = db.begin().await.expect("begin");
    outbox::enqueue(&txn, std::slice::from_ref(&rolled_back))
        .await
        .expect("enqueue");
    txn.rollback().await.expect("rollback");
    assert_eq!(outbox::pending(&db).await.expect("pending"), 1);

    let relay = Relay::spawn(db.clone(), Arc::clone(&publisher), RelaySettings::default());
    let id = committed.message_id.to_string();
    eventually(WAIT, "the committed row to be consumed", || async {
        (recorder.deliveries_of(&id) > 0).then_some(())
    })
    .await;
    relay.stop().await;
    let relay = Relay::spawn(db.clone(), Arc::clone(&publisher), RelaySettings::default());
    // A later row proves the restarted relay runs and that its messages arrive.
    let later = confirm("ORD-7");
    outbox::enqueue(&db, std::slice::from_ref(&later))
        .await
        .expect("enqueue");
    let later_id = later.message_id.to_string();
    eventually(WAIT, "the later row", || async {
        (recorder.deliveries_of(&later_id) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(recorder.deliveries_of(&id), 1, "published exactly once");
    assert_eq!(
        recorder.deliveries_of(&rolled_back.message_id.to_string()),
        0
    );
    assert_eq!(recorder.delivered(), 2);
    assert_eq!(outbox::pending(&db).await.expect("pending"), 0);
    relay.stop().await;
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_row_that_cannot_be_published_is_set_aside_and_blocks_nothing() {
    let db = fresh_platform_database().await;
    let runtime = messaging(3);
    let publisher = publisher(&runtime).await;
    let recorder = Recorder::new(&db, "after-bad-row");
    let consumer = consume(&runtime, &recorder, topic::STOCK, &["*"]).await;

    // `enqueue` refuses what the broker would refuse, and the transaction fails with it.
    let empty = OutgoingMessage {
        payload: Vec::new(),
        ..deduct("ORD-9")
    };
    let err = outbox::enqueue(&db, std::slice::from_ref(&empty))
        .await
        .expect_err("an empty body is refused");
    assert!(err.to_string().contains("empty payload"), "{err}");
    // A row written around `enqueue` is set aside by the relay, and the row behind it goes out.
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO outbox (message_id, topic, tag, message_key, payload) VALUES ($1, $2, 'BAD TAG', 'ORD-9', $3)",
        [empty.message_id.into(), topic::STOCK.into(), vec![1u8].into()],
    ))
    .await
    .expect("raw insert");
    let good = deduct("ORD-10");
    outbox::enqueue(&db, std::slice::from_ref(&good))
        .await
        .expect("enqueue");
    let relay = Relay::spawn(db.clone(), Arc::clone(&publisher), RelaySettings::default());
    let id = good.message_id.to_string();
    eventually(WAIT, "the row behind the bad one", || async {
        (recorder.deliveries_of(&id) > 0).then_some(())
    })
    .await;
    let failure = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT failure FROM outbox WHERE message_id = $1",
            [empty.message_id.into()],
        ))
        .await
        .expect("query")
        .and_then(|row| {
            row.try_get::<Option<String>>("", "failure")
                .expect("failure")
        });
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.contains("invalid tag")),
        "{failure:?}"
    );
    assert_eq!(outbox::pending(&db).await.expect("pending"), 0);
    relay.stop().await;
    consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_messages_through_the_outbox_are_all_handled_once_and_none_dead() {
    const N: usize = 20_000;
    let db = fresh_platform_database().await;
    // One message per listener call and 64 listener threads: the most consume tasks the
    // client's blocking lane can be asked to hold at once, the case where an undersized lane
    // rejects tasks and turns load into redelivery (with the client's default lane, about half
    // of the messages come back as redeliveries here).
    let runtime = MessagingRuntime::start(MessagingConfig {
        consume_batch: 1,
        consume_threads: 64,
        ..messaging_config(16)
    })
    .expect("runtime");
    let publisher = publisher(&runtime).await;
    let relay = Relay::spawn(db.clone(), Arc::clone(&publisher), RelaySettings::default());

    // As fast as it goes: many writers, each committing small transactions.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for chunk in (0..N / 8).collect::<Vec<_>>().chunks(25) {
                    let messages: Vec<_> = chunk
                        .iter()
                        .map(|i| deduct(&format!("ORD-{w}-{i}")))
                        .collect();
                    let txn = db.begin().await.expect("begin");
                    outbox::enqueue(&txn, &messages).await.expect("enqueue");
                    txn.commit().await.expect("commit");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    eventually(
        Duration::from_secs(120),
        "the relay to publish every row",
        || async { (outbox::pending(&db).await.expect("pending") == 0).then_some(()) },
    )
    .await;
    // The consumer meets all 20,000 at once, as after a burst or a restart.
    let recorder = Recorder::new(&db, "bulk");
    let consumer = consume(&runtime, &recorder, topic::STOCK, &["*"]).await;
    let dlq_reader = Recorder::new(&db, "bulk-dlq-reader");
    let dlq = consume(&runtime, &dlq_reader, "%DLQ%bulk", &["*"]).await;
    let (handled, most) = eventually(Duration::from_secs(240), "all 20,000 effects", || async {
        let (n, most) = effect_summary(&db).await;
        (n as usize >= N).then_some((n, most))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(handled as usize, N);
    assert_eq!(most, 1, "no effect happened twice");
    assert_eq!(
        dlq_reader.delivered(),
        0,
        "no healthy message reached the DLQ"
    );
    let delivered_twice = recorder
        .deliveries
        .lock()
        .expect("lock")
        .values()
        .filter(|n| **n > 1)
        .count();
    assert_eq!(delivered_twice, 0, "no message reached the handler twice");
    assert_eq!(
        recorder.redeliveries.load(Ordering::Relaxed),
        0,
        "load alone caused no redelivery"
    );
    relay.stop().await;
    for c in [consumer, dlq] {
        c.shutdown().await;
    }
    publisher.shutdown().await;
    runtime.shutdown().await;
}

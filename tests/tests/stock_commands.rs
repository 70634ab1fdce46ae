//! The saga's stock commands reach stock-svc over RocketMQ (`STOCK_TOPIC`) and over gRPC
//! (`Participant.Execute`); both go through the same idempotent handler and answer with the
//! same reply, on `SAGA_REPLY_TOPIC` for the first.

#![recursion_limit = "512"]

use std::sync::Arc;
use std::time::Duration;

use e2e::stock::StockApp;
use sea_orm::{ConnectionTrait, Statement};
use ticket_platform::dead_letter;
use ticket_platform::messaging::{
    Consumer, ConsumerSettings, HandleError, IncomingMessage, MessageHandler, MessagingRuntime,
    OutgoingMessage, Publisher, tag, topic,
};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{
    Command, OrderReserve, Reply, ReplyOutcome, StockConfirm, StockDeduct, StockSync,
};
use tokio::sync::mpsc;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

/// Collects the replies stock-svc sends on `SAGA_REPLY_TOPIC`.
struct Replies(mpsc::UnboundedSender<(IncomingMessage, Reply)>);

impl MessageHandler for Replies {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let reply: Reply = message.decode()?;
        let _ = self.0.send((message, reply));
        Ok(())
    }
}

fn command(order_no: &str, step: &str, attempt: u32, body: Body) -> Command {
    Command {
        saga_id: format!("saga-{order_no}"),
        order_no: order_no.into(),
        step: step.into(),
        attempt,
        body: Some(body),
    }
}

fn deduct(tier_id: i64, user: &str, quantity: i32) -> Body {
    Body::StockDeduct(StockDeduct {
        tier_id,
        user_id: user.into(),
        quantity,
    })
}

fn message(tag: &str, command: &Command) -> OutgoingMessage {
    OutgoingMessage::new(topic::STOCK, tag, &command.order_no, command).with_saga(
        &command.saga_id,
        &command.step,
        command.attempt,
    )
}

/// The orchestrator's side, played by the test: a publisher of commands and a consumer of
/// the replies on `SAGA_REPLY_TOPIC`.
struct Orchestrator {
    runtime: Arc<MessagingRuntime>,
    consumer: Consumer,
    publisher: Publisher,
}

impl Orchestrator {
    async fn start(app: &StockApp) -> (Self, mpsc::UnboundedReceiver<(IncomingMessage, Reply)>) {
        let runtime = MessagingRuntime::start(app.messaging.clone()).expect("client runtime");
        let (sender, replies) = mpsc::unbounded_channel();
        let consumer = Consumer::start(
            Arc::clone(&runtime),
            ConsumerSettings::new("orchestrator-replies").subscribe(topic::SAGA_REPLY, &["*"]),
            Replies(sender),
        )
        .await
        .expect("reply consumer");
        let publisher = Publisher::start(Arc::clone(&runtime), "test-orchestrator")
            .await
            .expect("publisher");
        (
            Self {
                runtime,
                consumer,
                publisher,
            },
            replies,
        )
    }

    async fn stop(self) {
        self.consumer.shutdown().await;
        self.publisher.shutdown().await;
        self.runtime.shutdown().await;
    }
}

async fn next_reply(
    replies: &mut mpsc::UnboundedReceiver<(IncomingMessage, Reply)>,
) -> (IncomingMessage, Reply) {
    tokio::time::timeout(WAIT, replies.recv())
        .await
        .expect("a reply on SAGA_REPLY_TOPIC in time")
        .expect("reply channel open")
}

async fn ledger_rows(app: &StockApp, order_no: &str) -> Vec<(String, i64)> {
    app.db
        .query_all_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT state, quantity FROM stock_ledger WHERE order_no = $1",
            [order_no.into()],
        ))
        .await
        .expect("ledger")
        .into_iter()
        .map(|row| {
            (
                row.try_get("", "state").expect("state"),
                row.try_get("", "quantity").expect("quantity"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_rocketmq_gets_its_reply_and_a_repeat_gets_the_same_reply_and_no_effect() {
    let app = StockApp::start().await;
    let tier = app.tier(5, 4).await.tier_id;
    let (orchestrator, mut replies) = Orchestrator::start(&app).await;
    let publisher = &orchestrator.publisher;

    // STOCK_DEDUCT: OK, with the server's price.
    let first = command("ORD-MQ-1", "STOCK_DEDUCT", 1, deduct(tier, "buyer", 2));
    e2e::send(publisher, &message(tag::STOCK_DEDUCT, &first)).await;
    let (envelope, reply) = next_reply(&mut replies).await;
    assert_eq!(
        envelope.tag, "STOCK_DEDUCT",
        "a reply is tagged with its step"
    );
    assert_eq!(envelope.key, "ORD-MQ-1");
    assert_eq!(envelope.saga_id.as_deref(), Some("saga-ORD-MQ-1"));
    assert_eq!(envelope.attempt, 1);
    assert_eq!(reply.outcome(), ReplyOutcome::Ok, "{reply:?}");
    let Some(ReplyBody::StockDeducted(deducted)) = &reply.body else {
        panic!("a deduct's reply carries the price: {reply:?}");
    };
    assert_eq!((deducted.unit_price_cents, deducted.available), (12_500, 3));

    // The same command sent again (a new message, as a retry of the step would be): the same
    // reply, and no second effect.
    e2e::send(publisher, &message(tag::STOCK_DEDUCT, &first)).await;
    let (_, again) = next_reply(&mut replies).await;
    assert_eq!(
        (again.outcome(), &again.reason, &again.body),
        (reply.outcome(), &reply.reason, &reply.body)
    );
    assert_eq!(
        (again.saga_id.as_str(), again.attempt),
        ("saga-ORD-MQ-1", 1)
    );
    assert_eq!(app.stock_of(tier).await.deducted, 2);
    assert_eq!(
        ledger_rows(&app, "ORD-MQ-1").await,
        vec![("D".to_owned(), 2)]
    );

    // One message delivered twice (same message_id): handled once, answered once.
    publisher.set_duplicate_deliveries(true);
    let confirm = command(
        "ORD-MQ-1",
        "STOCK_CONFIRM",
        1,
        Body::StockConfirm(StockConfirm { tier_id: tier }),
    );
    e2e::send(publisher, &message(tag::STOCK_CONFIRM, &confirm)).await;
    publisher.set_duplicate_deliveries(false);
    let (envelope, confirmed) = next_reply(&mut replies).await;
    assert_eq!(envelope.tag, "STOCK_CONFIRM");
    assert_eq!(confirmed.outcome(), ReplyOutcome::Ok, "{confirmed:?}");
    let stock = app.stock_of(tier).await;
    assert_eq!(
        (stock.deducted, stock.confirmed, stock.available),
        (0, 2, 3)
    );

    // A business refusal is a REFUSED reply with its reason.
    let greedy = command("ORD-MQ-2", "STOCK_DEDUCT", 1, deduct(tier, "other", 4));
    e2e::send(publisher, &message(tag::STOCK_DEDUCT, &greedy)).await;
    let (_, refused) = next_reply(&mut replies).await;
    assert_eq!(
        (refused.outcome(), refused.reason.as_str()),
        (ReplyOutcome::Refused, "SOLD_OUT"),
        "{refused:?}"
    );
    assert!(refused.detail.contains("3 ticket(s) left"), "{refused:?}");

    // A malformed command goes to the dead letters with its reason, and gets no reply.
    let garbage = OutgoingMessage {
        payload: vec![0xff, 0xff, 0xff],
        ..message(tag::STOCK_DEDUCT, &greedy)
    };
    let garbage_id = garbage.message_id.to_string();
    e2e::send(publisher, &garbage).await;
    let no_body = Command {
        body: None,
        ..command("ORD-MQ-3", "STOCK_DEDUCT", 1, deduct(tier, "x", 1))
    };
    let no_body = message(tag::STOCK_DEDUCT, &no_body);
    let no_body_id = no_body.message_id.to_string();
    e2e::send(publisher, &no_body).await;
    let reasons = e2e::eventually(WAIT, "the dead letters", || {
        let db = app.db.clone();
        let ids = [garbage_id.clone(), no_body_id.clone()];
        async move {
            let mut all = Vec::new();
            for id in &ids {
                let reasons = dead_letter::reasons(&db, id).await.ok()?;
                all.push(reasons.first()?.clone());
            }
            Some(all)
        }
    })
    .await;
    assert!(reasons[0].contains("not a valid Command"), "{reasons:?}");
    assert!(reasons[1].contains("no body"), "{reasons:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), replies.recv())
            .await
            .is_err(),
        "no further reply: the duplicate and the bad messages are not answered"
    );
    assert_eq!(ledger_rows(&app, "ORD-MQ-2").await, vec![]);

    orchestrator.stop().await;
    app.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_execute_answers_like_the_consumer_and_refuses_bad_commands() {
    let app = StockApp::start().await;
    let tier = app.tier(10, 4).await.tier_id;
    let mut participant = app.participant();

    let deduct_cmd = command("ORD-RPC-1", "STOCK_DEDUCT", 1, deduct(tier, "buyer", 3));
    let first = participant
        .execute(e2e::auth::service(deduct_cmd.clone()))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(first.outcome(), ReplyOutcome::Ok, "{first:?}");
    let second = participant
        .execute(e2e::auth::service(deduct_cmd))
        .await
        .expect("execute again")
        .into_inner();
    assert_eq!(
        (second.outcome(), &second.body),
        (first.outcome(), &first.body)
    );
    assert_eq!(app.stock_of(tier).await.deducted, 3);
    assert_eq!(
        ledger_rows(&app, "ORD-RPC-1").await,
        vec![("D".to_owned(), 3)]
    );

    // STOCK_SYNC writes the Redis counters to Postgres.
    let sync = participant
        .execute(e2e::auth::service(command(
            "",
            "STOCK_SYNC",
            1,
            Body::StockSync(StockSync { tier_id: tier }),
        )))
        .await
        .expect("sync")
        .into_inner();
    assert_eq!(sync.outcome(), ReplyOutcome::Ok, "{sync:?}");
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT available, deducted, confirmed FROM stock_sync WHERE tier_id = $1",
            [tier.into()],
        ))
        .await
        .expect("query")
        .expect("a stock_sync row");
    let synced: (i64, i64, i64) = (
        row.try_get("", "available").expect("available"),
        row.try_get("", "deducted").expect("deducted"),
        row.try_get("", "confirmed").expect("confirmed"),
    );
    assert_eq!(synced, (7, 3, 0));

    // Business refusals are replies; malformed commands are INVALID_ARGUMENT.
    let unknown = participant
        .execute(e2e::auth::service(command(
            "ORD-RPC-2",
            "STOCK_DEDUCT",
            1,
            deduct(999_999, "b", 1),
        )))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(
        (unknown.outcome(), unknown.reason.as_str()),
        (ReplyOutcome::Refused, "UNKNOWN_TIER")
    );
    let over = participant
        .execute(e2e::auth::service(command(
            "ORD-RPC-3",
            "STOCK_DEDUCT",
            1,
            deduct(tier, "b", 9),
        )))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(
        (over.outcome(), over.reason.as_str()),
        (ReplyOutcome::Refused, "INVALID_ARGUMENT")
    );
    let bad: Vec<(&str, Command)> = vec![
        (
            "no body",
            Command {
                body: None,
                ..command("ORD-RPC-4", "STOCK_DEDUCT", 1, deduct(tier, "b", 1))
            },
        ),
        (
            "not a stock command",
            command(
                "ORD-RPC-5",
                "ORDER_RESERVE",
                1,
                Body::OrderReserve(OrderReserve {
                    unit_price_cents: 1,
                    expire_at: None,
                }),
            ),
        ),
        (
            "no saga",
            Command {
                saga_id: String::new(),
                ..command("ORD-RPC-6", "STOCK_DEDUCT", 1, deduct(tier, "b", 1))
            },
        ),
        (
            "empty order number",
            command("", "STOCK_DEDUCT", 1, deduct(tier, "b", 1)),
        ),
        (
            "quantity 0",
            command("ORD-RPC-7", "STOCK_DEDUCT", 1, deduct(tier, "b", 0)),
        ),
        (
            "a step with spaces",
            command("ORD-RPC-8", "STOCK DEDUCT", 1, deduct(tier, "b", 1)),
        ),
    ];
    for (what, cmd) in bad {
        let status = participant
            .execute(e2e::auth::service(cmd))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    let status = participant
        .execute(tonic::Request::new(command(
            "ORD-RPC-9",
            "STOCK_DEDUCT",
            1,
            deduct(tier, "b", 1),
        )))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let stock = app.stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted),
        (7, 3),
        "nothing else changed"
    );
    app.stop(&[tier]).await;
}

/// A burst of commands: each is handled and answered once, however often it is delivered, the
/// commands consumed together in one transaction with their fence changes recorded together,
/// and a command that fails every time fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commands_is_answered_once_each_and_a_failing_command_fails_alone() {
    const GOOD: usize = 60;
    let app = StockApp::start().await;
    let tier = app.tier(100, 4).await.tier_id;
    let (orchestrator, mut replies) = Orchestrator::start(&app).await;
    let publisher = &orchestrator.publisher;

    // Sixty buyers and one whose command Postgres refuses each time it runs (a trigger refuses
    // its ledger row, after Redis took the deduct), all sent at once, each twice.
    app.db
        .execute_unprepared(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF NEW.order_no = 'ORD-BURST-POISON' THEN \
                 RAISE EXCEPTION 'the ledger refuses this order'; \
               END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON stock_ledger \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .await
        .expect("the trigger");
    let mut burst: Vec<OutgoingMessage> = (0..GOOD)
        .map(|i| {
            let order = format!("ORD-BURST-{i:02}");
            message(
                tag::STOCK_DEDUCT,
                &command(&order, "STOCK_DEDUCT", 1, deduct(tier, &format!("u{i}"), 1)),
            )
        })
        .collect();
    burst.insert(
        GOOD / 2,
        message(
            tag::STOCK_DEDUCT,
            &command(
                "ORD-BURST-POISON",
                "STOCK_DEDUCT",
                1,
                deduct(tier, "poisoned", 1),
            ),
        ),
    );
    let good_ids: Vec<String> = burst
        .iter()
        .filter(|m| m.key != "ORD-BURST-POISON")
        .map(|m| m.message_id.to_string())
        .collect();
    publisher.set_duplicate_deliveries(true);
    for _ in 0..10 {
        if publisher.publish_batch(&burst).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    publisher.set_duplicate_deliveries(false);

    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < GOOD {
        let (envelope, reply) = next_reply(&mut replies).await;
        assert_eq!(reply.outcome(), ReplyOutcome::Ok, "{reply:?}");
        assert_ne!(envelope.key, "ORD-BURST-POISON", "{reply:?}");
        *answered.entry(reply.order_no).or_insert(0) += 1;
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(3), replies.recv())
            .await
            .is_err(),
        "each good command answered once, the failing one not at all"
    );
    assert!(answered.values().all(|&n| n == 1), "{answered:?}");
    for i in 0..GOOD {
        assert_eq!(
            ledger_rows(&app, &format!("ORD-BURST-{i:02}")).await,
            vec![("D".to_owned(), 1)]
        );
    }
    assert_eq!(ledger_rows(&app, "ORD-BURST-POISON").await, vec![]);
    let poison_id = burst
        .iter()
        .find(|m| m.key == "ORD-BURST-POISON")
        .expect("the poison")
        .message_id
        .to_string();
    assert_eq!(
        dead_letter::reasons(&app.db, &poison_id)
            .await
            .expect("dead letters"),
        Vec::<String>::new(),
        "the failing command passed its checks: it fails in its run, and is redelivered"
    );
    assert_eq!(
        app.stock_of(tier).await.deducted,
        i64::try_from(GOOD + 1).expect("small"),
        "Redis took the failing command's deduct before the ledger refused it"
    );

    // The good commands' inbox rows were written by fewer transactions than commands.
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT count(*) AS rows, count(DISTINCT xmin::text) AS transactions FROM inbox \
             WHERE consumer_group = $1 AND message_id = ANY(string_to_array($2, ','))",
            [
                stock_svc::commands::CONSUMER_GROUP.into(),
                good_ids.join(",").into(),
            ],
        ))
        .await
        .expect("inbox")
        .expect("a row");
    let rows: i64 = row.try_get("", "rows").expect("rows");
    let transactions: i64 = row.try_get("", "transactions").expect("transactions");
    assert_eq!(rows, i64::try_from(GOOD).expect("small"));
    assert!(
        transactions < rows,
        "{rows} commands took {transactions} transactions: not batched"
    );
    eprintln!("{rows} commands consumed in {transactions} transactions");

    orchestrator.stop().await;
    app.stop(&[tier]).await;
}

//! order-svc against real Postgres, Redis, RocketMQ and a running stock-svc: idempotent
//! submission, the sold-out gate, payment racing expiry and cancellation, live status across
//! replicas, events once per transition across a restart, and bad input.

#![recursion_limit = "512"]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::order::OrderApp;
use e2e::stock::{StockApp, admin};
use futures::StreamExt;
use futures::future::join_all;
use sea_orm::{ConnectionTrait, Statement};
use ticket_platform::messaging::{
    Consumer, ConsumerSettings, HandleError, IncomingMessage, MessageHandler, MessagingRuntime,
    OutgoingMessage, Publisher, tag, topic,
};
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::{CancelReason, OrderStatus};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{
    Command, OrderCancel, OrderConfirm, OrderReserve, Reply, ReplyOutcome,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

fn in_seconds(seconds: i64) -> Option<prost_types::Timestamp> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    Some(prost_types::Timestamp {
        seconds: i64::try_from(now.as_secs()).expect("secs") + seconds,
        nanos: i32::try_from(now.subsec_nanos()).expect("nanos"),
    })
}

fn command(order_no: &str, step: &str, body: Body) -> Command {
    Command {
        saga_id: format!("saga-{order_no}"),
        order_no: order_no.into(),
        step: step.into(),
        attempt: 1,
        body: Some(body),
    }
}

fn reserve_cmd(order_no: &str, expire_in: i64) -> Command {
    command(
        order_no,
        "ORDER_RESERVE",
        Body::OrderReserve(OrderReserve {
            unit_price_cents: 12_500,
            expire_at: in_seconds(expire_in),
        }),
    )
}

fn cancel_cmd(order_no: &str, reason: &str) -> Command {
    command(
        order_no,
        "ORDER_CANCEL",
        Body::OrderCancel(OrderCancel {
            reason: reason.into(),
        }),
    )
}

async fn execute(app: &OrderApp, command: Command) -> Reply {
    app.participant()
        .execute(e2e::auth::service(command))
        .await
        .expect("execute")
        .into_inner()
}

async fn pay(
    app: &OrderApp,
    order_no: &str,
    payment_ref: &str,
    amount: i64,
) -> Result<pb::Order, tonic::Status> {
    app.orders()
        .pay_order(pb::PayOrderRequest {
            order_no: order_no.into(),
            payment_ref: payment_ref.into(),
            amount_cents: amount,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// An order awaiting payment of 2 x 125.00, deadline in `expire_in` seconds.
async fn reserved(app: &OrderApp, tier: i64, user: &str, expire_in: i64) -> pb::Order {
    let order = app
        .create(user, tier, 2, &format!("req-{user}"))
        .await
        .expect("create");
    let reply = execute(app, reserve_cmd(&order.order_no, expire_in)).await;
    assert_eq!(reply.outcome(), ReplyOutcome::Ok, "{reply:?}");
    let order = app.get(&order.order_no).await;
    assert_eq!(order.status(), OrderStatus::AwaitingPayment);
    assert_eq!(
        (order.unit_price_cents, order.total_cents),
        (12_500, 25_000)
    );
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_creates_with_fifty_request_ids_make_fifty_orders() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(1_000, 4).await.tier_id;
    let calls = (0..500).map(|i| {
        let orders = &orders;
        async move {
            let k = i % 50;
            let order = orders
                .create(&format!("buyer{k}"), tier, 1, &format!("req-{k}"))
                .await
                .expect("create");
            (k, order)
        }
    });
    let results = join_all(calls).await;
    let mut by_request: HashMap<usize, HashSet<String>> = HashMap::new();
    for (k, order) in &results {
        assert_eq!(order.status(), OrderStatus::Pending);
        assert_eq!(order.user_id, format!("buyer{k}"));
        by_request
            .entry(*k)
            .or_default()
            .insert(order.order_no.clone());
    }
    assert_eq!(by_request.len(), 50);
    assert!(
        by_request.values().all(|numbers| numbers.len() == 1),
        "one order per (user, request id)"
    );
    assert_eq!(orders.count().await, 50);
    // Order numbers do not follow one another.
    let numbers: Vec<&String> = by_request.values().flatten().collect();
    assert!(numbers.iter().all(|n| n.len() == 21 && n.starts_with('T')));
    orders.stop().await;
    stock.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_tier_is_refused_at_once_and_no_order_is_written() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(1, 1).await.tier_id;
    let early = orders.create("early", tier, 1, "r1").await.expect("create");
    let answer = stock
        .stock()
        .prededuct(admin(ticket_proto::stock::v1::PredeductRequest {
            order_no: early.order_no.clone(),
            tier_id: tier,
            user_id: "early".into(),
            quantity: 1,
        }))
        .await
        .expect("prededuct")
        .into_inner();
    assert_eq!(answer.available, 0);

    let refused = orders
        .create("late", tier, 1, "r2")
        .await
        .expect_err("sold out");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("sold out"), "{refused:?}");
    assert_eq!(
        orders.count().await,
        1,
        "no order written for the refused buyer"
    );
    // The early buyer's repeated request still gets its order.
    let again = orders.create("early", tier, 1, "r1").await.expect("repeat");
    assert_eq!(again.order_no, early.order_no);
    orders.stop().await;
    stock.stop(&[tier]).await;
}

async fn prededuct(stock: &StockApp, tier: i64, order: &pb::Order) -> i64 {
    stock
        .stock()
        .prededuct(admin(ticket_proto::stock::v1::PredeductRequest {
            order_no: order.order_no.clone(),
            tier_id: tier,
            user_id: order.user_id.clone(),
            quantity: order.quantity,
        }))
        .await
        .expect("prededuct")
        .into_inner()
        .available
}

async fn rollback(stock: &StockApp, tier: i64, order_no: &str) {
    stock
        .stock()
        .rollback(admin(ticket_proto::stock::v1::RollbackRequest {
            order_no: order_no.to_owned(),
            tier_id: tier,
        }))
        .await
        .expect("rollback");
}

/// Asserts `answer` is the sold-out refusal.
fn refused(answer: Result<pb::Order, tonic::Status>) {
    let status = answer.expect_err("refused as sold out");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_are_accepted_for_as_many_tickets_as_there_are_until_a_promise_ends() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(10, 4).await.tier_id;
    // 200 buyers at once, before any prededuct (no orchestrator runs here): 10 accepted.
    let answers = join_all((0..200).map(|i| {
        let orders = &orders;
        async move { orders.create(&format!("buyer{i}"), tier, 1, "r").await }
    }))
    .await;
    let mut accepted = Vec::new();
    for answer in answers {
        match answer {
            Ok(order) => accepted.push(order),
            refusal => refused(refusal),
        }
    }
    assert_eq!(accepted.len(), 10, "one accepted order per ticket");
    assert_eq!(
        orders.count().await,
        10,
        "no order written for a refused buyer"
    );

    // A repeated request gets its order and promises nothing more.
    let first = &accepted[0];
    let again = orders
        .create(&first.user_id, tier, 1, "r")
        .await
        .expect("a repeat gets its order");
    assert_eq!(again.order_no, first.order_no);
    refused(orders.create("late", tier, 1, "r").await);

    // Nine prededucts: their promises end as the tickets are deducted; still none left.
    for order in &accepted[1..] {
        prededuct(&stock, tier, order).await;
    }
    refused(orders.create("late", tier, 1, "r2").await);
    // The tenth order's saga is compensated before its prededuct (an empty rollback): its
    // promise ends and its ticket is offered again, to one buyer.
    rollback(&stock, tier, &first.order_no).await;
    orders
        .create("second-chance", tier, 1, "r")
        .await
        .expect("the ticket no order holds is offered again");
    refused(orders.create("third-chance", tier, 1, "r").await);
    // A deducted order rolled back returns its ticket, to one buyer.
    rollback(&stock, tier, &accepted[1].order_no).await;
    orders
        .create("third-chance", tier, 1, "r2")
        .await
        .expect("a returned ticket is offered again");
    refused(orders.create("fourth-chance", tier, 1, "r").await);
    orders.stop().await;
    stock.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promise_whose_prededuct_never_comes_lapses_after_the_hold() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start_configured(
        &stock,
        e2e::fresh_database_config("t_order_").await,
        false,
        None,
        |config| config.admission_hold = Duration::from_millis(1_500),
    )
    .await;
    let tier = stock.tier(1, 1).await.tier_id;
    let first = orders.create("first", tier, 1, "r").await.expect("create");
    refused(orders.create("second", tier, 1, "r").await);
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    // No saga ever prededucted the first order: its ticket is offered again.
    let third = orders
        .create("third", tier, 1, "r")
        .await
        .expect("the lapsed promise's ticket is offered again");
    // Both were accepted; the prededuct decides between them.
    assert_eq!(prededuct(&stock, tier, &third).await, 0);
    let late = stock
        .stock()
        .prededuct(admin(ticket_proto::stock::v1::PredeductRequest {
            order_no: first.order_no.clone(),
            tier_id: tier,
            user_id: first.user_id.clone(),
            quantity: 1,
        }))
        .await
        .expect("prededuct")
        .into_inner();
    assert_eq!(
        (late.outcome(), late.available),
        (ticket_proto::stock::v1::PredeductOutcome::SoldOut, 0),
        "nothing sold twice"
    );
    orders.stop().await;
    stock.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_races_expiry_and_cancellation_and_exactly_one_wins_each_time() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(1_000, 4).await.tier_id;
    let rounds = 25;
    let mut paid_wins = [0usize; 2];
    for (race, wins) in paid_wins.iter_mut().enumerate() {
        let setups = (0..rounds).map(|i| {
            let orders = &orders;
            async move { reserved(orders, tier, &format!("r{race}-{i}"), 300).await }
        });
        let reserved_orders = join_all(setups).await;
        let races = reserved_orders.iter().map(|order| {
            let orders = &orders;
            async move {
                let payment_ref = format!("pay-{}", order.order_no);
                let payment = pay(orders, &order.order_no, &payment_ref, 25_000);
                if race == 0 {
                    let expiry = execute(orders, cancel_cmd(&order.order_no, "PAYMENT_EXPIRED"));
                    let (paid, expired) = tokio::join!(payment, expiry);
                    let cancel_won = expired.outcome() == ReplyOutcome::Ok;
                    (order.order_no.clone(), paid, cancel_won, expired.detail)
                } else {
                    let mut client = orders.orders();
                    let cancel = client.cancel_order(pb::CancelOrderRequest {
                        order_no: order.order_no.clone(),
                        reason: "changed my mind".into(),
                    });
                    let (paid, cancelled) = tokio::join!(payment, cancel);
                    let cancel_won = cancelled.is_ok();
                    let why = cancelled
                        .err()
                        .map(|s| s.message().to_owned())
                        .unwrap_or_default();
                    (order.order_no.clone(), paid, cancel_won, why)
                }
            }
        });
        for (order_no, paid, cancel_won, cancel_why) in join_all(races).await {
            let now = orders.get(&order_no).await;
            match (&paid, cancel_won) {
                (Ok(order), false) => {
                    assert_eq!(order.status(), OrderStatus::Paid);
                    assert_eq!(now.status(), OrderStatus::Paid);
                    assert!(
                        cancel_why.contains("paid"),
                        "the loser says why: {cancel_why}"
                    );
                    *wins += 1;
                }
                (Err(status), true) => {
                    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                    assert!(status.message().contains("cancelled"), "{status:?}");
                    assert_eq!(now.status(), OrderStatus::Cancelled);
                    let reason = if race == 0 {
                        CancelReason::PaymentExpired
                    } else {
                        CancelReason::UserCancelled
                    };
                    assert_eq!(now.cancel_reason(), reason);
                }
                other => panic!("exactly one must win, got {other:?} for {order_no}"),
            }
        }
    }
    println!("payment won {paid_wins:?} of {rounds} races (expiry, buyer's cancel)");

    // Past the deadline, payment is refused even before the expiry is processed.
    let late = reserved(&orders, tier, "late", 1).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let refused = pay(&orders, &late.order_no, "pay-late", 25_000)
        .await
        .expect_err("late");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("deadline"), "{refused:?}");
    assert_eq!(
        orders.get(&late.order_no).await.status(),
        OrderStatus::AwaitingPayment
    );

    // Paying twice with the same reference is answered like the first time.
    let twice = reserved(&orders, tier, "twice", 300).await;
    let first = pay(&orders, &twice.order_no, "pay-twice", 25_000)
        .await
        .expect("pay");
    let second = pay(&orders, &twice.order_no, "pay-twice", 25_000)
        .await
        .expect("pay again");
    assert_eq!(first, second);
    let other = pay(&orders, &twice.order_no, "pay-other", 25_000)
        .await
        .expect_err("other ref");
    assert_eq!(other.code(), Code::FailedPrecondition);
    orders.stop().await;
    stock.stop(&[tier]).await;
}

type OrderStream = tonic::codec::Streaming<pb::Order>;

async fn next(stream: &mut OrderStream) -> Option<Result<pb::Order, tonic::Status>> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an update in time")
}

/// Collects what arrives on a topic.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<IncomingMessage>>>);

impl MessageHandler for Inbox {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        self.0.lock().expect("lock").push(message);
        Ok(())
    }
}

impl Inbox {
    fn all(&self) -> Vec<IncomingMessage> {
        self.0.lock().expect("lock").clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_order_follows_an_order_driven_over_rocketmq_across_replicas() {
    let stock = StockApp::start().await;
    let a = OrderApp::start(&stock).await;
    let b = OrderApp::start_replica(&stock, a.database.clone(), false).await;
    let tier = stock.tier(100, 4).await.tier_id;
    let runtime = MessagingRuntime::start(stock.messaging.clone()).expect("client runtime");
    let replies = Inbox::default();
    let reply_consumer = Consumer::start(
        Arc::clone(&runtime),
        ConsumerSettings::new("test-orchestrator").subscribe(topic::SAGA_REPLY, &["*"]),
        replies.clone(),
    )
    .await
    .expect("reply consumer");
    let publisher = Publisher::start(Arc::clone(&runtime), "test-orchestrator")
        .await
        .expect("publisher");

    let order = a.create("watcher", tier, 2, "w1").await.expect("create");
    // Watched on replica A; the commands may be handled by either replica, the payment is on B.
    let mut stream = a
        .orders()
        .watch_order(pb::WatchOrderRequest {
            order_no: order.order_no.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await.expect("an order").expect("ok");
    assert_eq!(first.status(), OrderStatus::Pending);

    let send = |cmd: Command, tag: &'static str| {
        let publisher = &publisher;
        async move {
            let message = OutgoingMessage::new(topic::ORDER_CMD, tag, &cmd.order_no, &cmd)
                .with_saga(&cmd.saga_id, &cmd.step, cmd.attempt);
            e2e::send(publisher, &message).await;
        }
    };
    send(reserve_cmd(&order.order_no, 300), tag::ORDER_RESERVE).await;
    let reserved = next(&mut stream).await.expect("an order").expect("ok");
    assert_eq!(reserved.status(), OrderStatus::AwaitingPayment);
    assert_eq!(reserved.total_cents, 25_000);

    pay(&b, &order.order_no, "pay-w1", 25_000)
        .await
        .expect("pay on replica B");
    let paid = next(&mut stream).await.expect("an order").expect("ok");
    assert_eq!(paid.status(), OrderStatus::Paid);

    send(
        command(
            &order.order_no,
            "ORDER_CONFIRM",
            Body::OrderConfirm(OrderConfirm {}),
        ),
        tag::ORDER_CONFIRM,
    )
    .await;
    let confirmed = next(&mut stream).await.expect("an order").expect("ok");
    assert_eq!(confirmed.status(), OrderStatus::Confirmed);
    assert!(
        next(&mut stream).await.is_none(),
        "the stream ends at a final state"
    );

    let replies = e2e::eventually(WAIT, "two replies", || {
        let all = replies.all();
        async move { (all.len() >= 2).then_some(all) }
    })
    .await;
    let mut steps: Vec<String> = replies.iter().map(|m| m.tag.clone()).collect();
    steps.sort();
    assert_eq!(
        steps,
        vec!["ORDER_CONFIRM".to_owned(), "ORDER_RESERVE".to_owned()]
    );
    for message in &replies {
        let reply: Reply = message.decode().expect("a reply");
        assert_eq!(reply.outcome(), ReplyOutcome::Ok, "{reply:?}");
    }
    reply_consumer.shutdown().await;
    publisher.shutdown().await;
    runtime.shutdown().await;
    a.stop().await;
    b.stop().await;
    stock.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_on_order_topic_once_per_transition_across_a_restart() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(1_000, 4).await.tier_id;
    let runtime = MessagingRuntime::start(stock.messaging.clone()).expect("client runtime");
    let events = Inbox::default();
    let consumer = Consumer::start(
        Arc::clone(&runtime),
        ConsumerSettings::new("test-order-events").subscribe(topic::ORDER, &["*"]),
        events.clone(),
    )
    .await
    .expect("event consumer");

    let mut expected: HashSet<(String, String)> = HashSet::new();
    for i in 0..20 {
        let order = reserved(&orders, tier, &format!("ev{i}"), 300).await;
        expected.insert((order.order_no.clone(), "ORDER_CREATED".into()));
        if i % 2 == 0 {
            pay(&orders, &order.order_no, &format!("pay-ev{i}"), 25_000)
                .await
                .expect("pay");
            expected.insert((order.order_no.clone(), "ORDER_PAID".into()));
        } else {
            orders
                .orders()
                .cancel_order(pb::CancelOrderRequest {
                    order_no: order.order_no.clone(),
                    reason: String::new(),
                })
                .await
                .expect("cancel");
            expected.insert((order.order_no.clone(), "ORDER_CANCELLED".into()));
        }
    }
    // Stopped right after the last commit, then started again on the same database.
    let database = orders.database.clone();
    orders.stop().await;
    let again = OrderApp::start_replica(&stock, database, false).await;

    let seen = e2e::eventually(WAIT, "every event", || {
        let all = events.all();
        let expected = &expected;
        async move {
            let got: HashSet<(String, String)> =
                all.iter().map(|m| (m.key.clone(), m.tag.clone())).collect();
            (got == *expected).then_some(all)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen_later = events.all();
    let mut ids: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for message in &seen_later {
        ids.entry((message.key.clone(), message.tag.clone()))
            .or_default()
            .insert(message.message_id.clone());
    }
    assert_eq!(ids.len(), expected.len(), "no unexpected event");
    for (transition, message_ids) in &ids {
        assert_eq!(
            message_ids.len(),
            1,
            "{transition:?} announced once: {message_ids:?}"
        );
    }
    println!(
        "{} events for {} transitions ({} deliveries before the wait)",
        seen_later.len(),
        expected.len(),
        seen.len()
    );
    consumer.shutdown().await;
    runtime.shutdown().await;
    again.stop().await;
    stock.stop(&[tier]).await;
}

/// A buyer's contact is kept with the order, apart from it: a repeated request keeps the first
/// one's, an order without one has none, no order message carries it, and `GetContact` hands it
/// out with the admin token only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyers_contact_is_kept_with_the_order_and_nowhere_else() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(100, 4).await.tier_id;
    let given = with_contact(
        create_req("reachable", tier, 1, "c1"),
        "reachable@example.com",
        "+14155550123",
        "device-token-1",
    );
    let order = orders
        .orders()
        .create_order(given)
        .await
        .expect("create with a contact")
        .into_inner();
    let again = orders
        .orders()
        .create_order(with_contact(
            create_req("reachable", tier, 1, "c1"),
            "other@example.com",
            "",
            "",
        ))
        .await
        .expect("the same request again")
        .into_inner();
    assert_eq!(again.order_no, order.order_no);
    let none = orders
        .create("unreachable", tier, 1, "c2")
        .await
        .expect("create without a contact");

    let contact_of = |order_no: &str| {
        let mut client = orders.contacts();
        let request = pb::GetContactRequest {
            order_no: order_no.into(),
        };
        async move { client.get_contact(e2e::auth::service(request)).await }
    };
    let kept = contact_of(&order.order_no)
        .await
        .expect("the contact, with the service token")
        .into_inner();
    assert_eq!(
        kept.contact,
        Some(pb::Contact {
            email: "reachable@example.com".into(),
            phone: "+14155550123".into(),
            push_token: "device-token-1".into(),
        }),
        "the first request's contact"
    );
    assert_eq!(
        kept.order.map(|o| (o.order_no, o.user_id)),
        Some((order.order_no.clone(), "reachable".to_owned()))
    );
    let nothing = contact_of(&none.order_no).await.expect("read").into_inner();
    assert_eq!(nothing.contact, Some(pb::Contact::default()));
    let unknown = contact_of("T00000000000000000000")
        .await
        .expect_err("an unknown order");
    assert_eq!(unknown.code(), Code::NotFound);
    let anyone = orders
        .contacts()
        .get_contact(pb::GetContactRequest {
            order_no: order.order_no.clone(),
        })
        .await
        .expect_err("without the service token");
    assert_eq!(anyone.code(), Code::Unauthenticated);
    let count = |sql: &'static str| {
        let db = orders.db.clone();
        async move {
            db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .expect("outbox")
                .expect("a row")
                .try_get::<i64>("", "n")
                .expect("n")
        }
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM outbox").await,
        2,
        "the two orders' ORDER_CREATED"
    );
    let carried = count(
        "SELECT count(*) AS n FROM outbox \
         WHERE position(convert_to('example.com', 'UTF8') IN payload) > 0 \
            OR position(convert_to('4155550123', 'UTF8') IN payload) > 0 \
            OR position(convert_to('device-token', 'UTF8') IN payload) > 0",
    )
    .await;
    assert_eq!(carried, 0, "no order message carries the contact");
    orders.stop().await;
    stock.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(100, 4).await.tier_id;
    let order = reserved(&orders, tier, "careful", 300).await;
    let count = orders.count().await;

    let creates: Vec<(&str, pb::CreateOrderRequest, Code)> = vec![
        (
            "quantity 0",
            create_req("u", tier, 0, "a"),
            Code::InvalidArgument,
        ),
        (
            "negative quantity",
            create_req("u", tier, -3, "b"),
            Code::InvalidArgument,
        ),
        (
            "quantity 101",
            create_req("u", tier, 101, "c"),
            Code::InvalidArgument,
        ),
        (
            "above the tier's limit",
            create_req("u", tier, 5, "d"),
            Code::InvalidArgument,
        ),
        (
            "unknown tier",
            create_req("u", 999_999, 1, "e"),
            Code::NotFound,
        ),
        (
            "zero tier",
            create_req("u", 0, 1, "f"),
            Code::InvalidArgument,
        ),
        (
            "empty user",
            create_req("", tier, 1, "g"),
            Code::InvalidArgument,
        ),
        (
            "empty request id",
            create_req("u", tier, 1, ""),
            Code::InvalidArgument,
        ),
        (
            "over-long request id",
            create_req("u", tier, 1, &"r".repeat(65)),
            Code::InvalidArgument,
        ),
        (
            "over-long user",
            create_req(&"u".repeat(65), tier, 1, "h"),
            Code::InvalidArgument,
        ),
        (
            "reused request id",
            create_req("careful", tier, 1, "req-careful"),
            Code::AlreadyExists,
        ),
        (
            "an e-mail address without a domain",
            with_contact(create_req("u", tier, 1, "i"), "buyer@", "", ""),
            Code::InvalidArgument,
        ),
        (
            "a phone number that is not E.164",
            with_contact(create_req("u", tier, 1, "j"), "", "0171 555 0123", ""),
            Code::InvalidArgument,
        ),
        (
            "a push token of two words",
            with_contact(create_req("u", tier, 1, "k"), "", "", "two words"),
            Code::InvalidArgument,
        ),
        (
            "a good e-mail address with a bad phone number",
            with_contact(create_req("u", tier, 1, "l"), "u@example.com", "+1", ""),
            Code::InvalidArgument,
        ),
    ];
    for (what, request, code) in creates {
        let status = orders.orders().create_order(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what} says why");
        if what.contains("phone") {
            assert!(status.message().starts_with("contact.phone"), "{status:?}");
        }
    }
    let no = order.order_no.as_str();
    let pays: Vec<(&str, pb::PayOrderRequest, Code)> = vec![
        (
            "wrong amount",
            pay_req(no, "p1", 24_999),
            Code::InvalidArgument,
        ),
        ("zero amount", pay_req(no, "p2", 0), Code::InvalidArgument),
        (
            "empty payment ref",
            pay_req(no, "", 25_000),
            Code::InvalidArgument,
        ),
        (
            "over-long payment ref",
            pay_req(no, &"p".repeat(129), 25_000),
            Code::InvalidArgument,
        ),
        (
            "unknown order",
            pay_req("T0000", "p3", 25_000),
            Code::NotFound,
        ),
        (
            "empty order number",
            pay_req("", "p4", 25_000),
            Code::InvalidArgument,
        ),
    ];
    for (what, request, code) in pays {
        let status = orders.orders().pay_order(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }
    let status = orders
        .orders()
        .cancel_order(pb::CancelOrderRequest {
            order_no: no.into(),
            reason: "x".repeat(501),
        })
        .await
        .expect_err("over-long reason");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = orders
        .orders()
        .get_order(pb::GetOrderRequest {
            order_no: "T-nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    for (what, request) in [
        (
            "page too big",
            pb::ListOrdersRequest {
                user_id: "careful".into(),
                page_size: 1_000,
                page_token: String::new(),
            },
        ),
        (
            "foreign page token",
            pb::ListOrdersRequest {
                user_id: "careful".into(),
                page_size: 10,
                page_token: "abc".into(),
            },
        ),
        (
            "no user",
            pb::ListOrdersRequest {
                user_id: String::new(),
                page_size: 10,
                page_token: String::new(),
            },
        ),
    ] {
        let status = orders.orders().list_orders(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
    }
    let status = orders
        .participant()
        .execute(tonic::Request::new(reserve_cmd(no, 300)))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = orders
        .participant()
        .execute(e2e::auth::service(cancel_cmd(no, "BORED")))
        .await
        .expect_err("unknown reason");
    assert_eq!(status.code(), Code::InvalidArgument);

    let after = orders.get(no).await;
    assert_eq!(after, order, "the order did not change");
    assert_eq!(orders.count().await, count, "no order was written");
    orders.stop().await;
    stock.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyers_orders_are_listed_page_by_page() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(100, 4).await.tier_id;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            orders
                .create("lister", tier, 1, &format!("l{i}"))
                .await
                .expect("create")
                .order_no,
        );
    }
    orders
        .create("someone-else", tier, 1, "x")
        .await
        .expect("create");
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = orders
            .orders()
            .list_orders(pb::ListOrdersRequest {
                user_id: "lister".into(),
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.orders.len() <= 2);
        listed.extend(page.orders.into_iter().map(|o| o.order_no));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    made.reverse();
    assert_eq!(
        listed, made,
        "newest first, every order once, only the buyer's"
    );
    orders.stop().await;
    stock.stop(&[tier]).await;
}

fn create_req(user: &str, tier: i64, quantity: i32, request_id: &str) -> pb::CreateOrderRequest {
    pb::CreateOrderRequest {
        user_id: user.into(),
        tier_id: tier,
        quantity,
        request_id: request_id.into(),
        wait_for_decision: false,
        contact: None,
    }
}

fn with_contact(
    mut request: pb::CreateOrderRequest,
    email: &str,
    phone: &str,
    push_token: &str,
) -> pb::CreateOrderRequest {
    request.contact = Some(pb::Contact {
        email: email.into(),
        phone: phone.into(),
        push_token: push_token.into(),
    });
    request
}

fn pay_req(order_no: &str, payment_ref: &str, amount: i64) -> pb::PayOrderRequest {
    pb::PayOrderRequest {
        order_no: order_no.into(),
        payment_ref: payment_ref.into(),
        amount_cents: amount,
    }
}

//! Redis failing under stock-svc and order-svc, on a private `redis-server` of each test (the
//! shared Redis is never touched): a Redis restored from an older snapshot never sells a
//! ticket twice, and a Redis killed and started again makes calls answer `UNAVAILABLE` within
//! seconds and health NOT_SERVING, then the services recover by themselves.

#![recursion_limit = "512"]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::order::OrderApp;
use e2e::redis::PrivateRedis;
use e2e::stock::{StockApp, admin};
use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::PredeductOutcome;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// What the server's `grpc.health.v1.Health/Check` answers as a whole.
async fn serving(channel: &tonic::transport::Channel) -> Option<ServingStatus> {
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(answer.into_inner().status())
}

/// A prededuct of one ticket for `user`.
async fn prededuct(
    app: &StockApp,
    order: &str,
    tier: i64,
    user: &str,
) -> Result<PredeductOutcome, tonic::Status> {
    app.stock()
        .prededuct(admin(pb::PredeductRequest {
            order_no: order.into(),
            tier_id: tier,
            user_id: user.into(),
            quantity: 1,
        }))
        .await
        .map(|answer| answer.into_inner().outcome())
}

async fn confirm(app: &StockApp, order: &str, tier: i64) -> Result<pb::StockChange, tonic::Status> {
    app.stock()
        .confirm(admin(pb::ConfirmRequest {
            order_no: order.into(),
            tier_id: tier,
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// Repeats `call` while it answers `UNAVAILABLE` (Redis reconnecting), for at most `within`.
async fn once_available<T, F, Fut>(within: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("not available again within {within:?}: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restored_from_an_older_snapshot_never_sells_a_ticket_twice() {
    const TOTAL: i64 = 10;
    let mut redis = PrivateRedis::start();
    let app = StockApp::start_on(&redis.url()).await;
    let session = app.session(2).await;
    let tier = app.tier_in(session.session_id, "Floor", TOTAL, 0).await;
    // A second tier of the session, which the buyers of the first one also hold tickets of.
    let balcony = app.tier_in(session.session_id, "Balcony", 4, 0).await;
    let tier_id = tier.tier_id;

    let mut sold = BTreeSet::new();
    for n in 1..=3 {
        let order = format!("O{n}");
        assert_eq!(
            prededuct(&app, &order, tier_id, &format!("u{n}"))
                .await
                .ok(),
            Some(PredeductOutcome::Deducted)
        );
        sold.insert(order);
    }
    confirm(&app, "O1", tier_id).await.expect("confirm O1");
    redis.snapshot("older.rdb");

    // Sold after the snapshot: an older Redis does not know them, the ledger does.
    for n in 4..=6 {
        let order = format!("O{n}");
        assert_eq!(
            prededuct(&app, &order, tier_id, &format!("u{n}"))
                .await
                .ok(),
            Some(PredeductOutcome::Deducted)
        );
        sold.insert(order);
    }
    confirm(&app, "O4", tier_id).await.expect("confirm O4");
    // u1 now holds its session's limit (2): O1 here, B1 in the other tier.
    assert_eq!(
        prededuct(&app, "B1", balcony.tier_id, "u1").await.ok(),
        Some(PredeductOutcome::Deducted)
    );
    assert_eq!(app.ledger_held(tier_id).await, 6);

    let before = redis.run_id();
    redis.kill();
    redis.restore("older.rdb");
    redis.up();
    assert_ne!(redis.run_id(), before, "a new Redis process");
    assert!(
        redis.cli(&["KEYS", "*"]).contains(&app.key_prefix),
        "the older snapshot holds the tier"
    );

    // Many buyers at once on the restored Redis: they wait for one check of the session.
    let rush = futures::future::join_all((7..=20).map(|n| {
        let app = &app;
        async move {
            let (order, user) = (format!("O{n}"), format!("u{n}"));
            let outcome = once_available(Duration::from_secs(10), || {
                prededuct(app, &order, tier_id, &user)
            })
            .await;
            (order, outcome)
        }
    }))
    .await;
    for (order, outcome) in rush {
        match outcome {
            PredeductOutcome::Deducted => {
                sold.insert(order);
            }
            PredeductOutcome::SoldOut => {}
            other => panic!("{order}: {other:?}"),
        }
    }

    // An order sold after the snapshot, asked again: the same answer, no second ticket.
    assert_eq!(
        once_available(Duration::from_secs(10), || prededuct(
            &app, "O5", tier_id, "u5"
        ))
        .await,
        PredeductOutcome::Deducted
    );
    // Its confirmation works: the fence is the ledger's.
    let change = confirm(&app, "O5", tier_id).await.expect("confirm O5");
    assert_eq!(change.quantity, 1);
    // The session's limit counts what u1 bought after the snapshot too.
    assert_eq!(
        prededuct(&app, "O-u1-again", tier_id, "u1").await.ok(),
        Some(PredeductOutcome::LimitReached),
        "u1 holds O1 and B1: the limit of the session"
    );

    // Sell until sold out: exactly TOTAL tickets, whatever Redis forgot.
    let mut n = 21;
    loop {
        let order = format!("O{n}");
        match prededuct(&app, &order, tier_id, &format!("u{n}")).await {
            Ok(PredeductOutcome::Deducted) => {
                sold.insert(order);
            }
            Ok(PredeductOutcome::SoldOut) => break,
            other => panic!("{order}: {other:?}"),
        }
        n += 1;
        assert!(n < 100, "never sold out");
    }
    assert_eq!(
        sold.len(),
        usize::try_from(TOTAL).expect("total"),
        "{sold:?}"
    );
    assert_eq!(
        app.ledger_held(tier_id).await,
        TOTAL,
        "the ledger never exceeds the total"
    );
    let report = app.reconcile(tier_id).await;
    assert!(!report.drift, "{}", report.report);
    let redis_stock = report.redis.expect("redis");
    assert_eq!(
        (
            redis_stock.available,
            redis_stock.deducted + redis_stock.confirmed
        ),
        (0, TOTAL)
    );
    let report = app.reconcile(balcony.tier_id).await;
    assert!(!report.drift, "{}", report.report);

    app.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_started_again_answers_unavailable_then_recovers() {
    let mut redis = PrivateRedis::start();
    let stock = StockApp::start_on(&redis.url()).await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(5, 4).await;
    let tier_id = tier.tier_id;
    for order in ["K1", "K2"] {
        assert_eq!(
            prededuct(&stock, order, tier_id, "buyer").await.ok(),
            Some(PredeductOutcome::Deducted)
        );
    }
    orders
        .create("buyer", tier_id, 1, "before")
        .await
        .expect("an order while Redis is up");

    redis.kill();

    // Neither can sell without Redis: health turns NOT_SERVING.
    for (name, channel) in [
        ("stock-svc", &stock.channel),
        ("order-svc", &orders.channel),
    ] {
        e2e::eventually(Duration::from_secs(5), "NOT_SERVING", || async {
            (serving(channel).await == Some(ServingStatus::NotServing)).then_some(())
        })
        .await;
        eprintln!("{name} NOT_SERVING with Redis down");
    }

    let started = Instant::now();
    let status = prededuct(&stock, "K3", tier_id, "buyer")
        .await
        .expect_err("no live stock without Redis");
    let prededuct_took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let started = Instant::now();
    let status = stock
        .catalog()
        .get_tier(pb::GetTierRequest { tier_id })
        .await
        .expect_err("GetTier counts from Redis");
    let get_tier_took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let started = Instant::now();
    let status = orders
        .create("buyer", tier_id, 1, "while-down")
        .await
        .expect_err("CreateOrder reads the sold-out flag");
    let create_took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    eprintln!(
        "Redis down: Prededuct UNAVAILABLE after {prededuct_took:?}, GetTier after \
         {get_tier_took:?}, CreateOrder after {create_took:?}"
    );
    for took in [prededuct_took, get_tier_took, create_took] {
        assert!(took < Duration::from_secs(5), "UNAVAILABLE took {took:?}");
    }

    // Back on the same port, empty: the tier is rebuilt from the ledger.
    redis.wipe();
    redis.up();
    let started = Instant::now();
    let outcome = once_available(Duration::from_secs(10), || {
        prededuct(&stock, "K3", tier_id, "buyer")
    })
    .await;
    let stock_back = started.elapsed();
    assert_eq!(outcome, PredeductOutcome::Deducted);
    let order = once_available(Duration::from_secs(10), || {
        orders.create("buyer", tier_id, 1, "after")
    })
    .await;
    let orders_back = started.elapsed();
    assert!(!order.order_no.is_empty());
    let got = once_available(Duration::from_secs(10), || async {
        stock
            .catalog()
            .get_tier(pb::GetTierRequest { tier_id })
            .await
            .map(tonic::Response::into_inner)
    })
    .await;
    eprintln!("Redis back: Prededuct after {stock_back:?}, CreateOrder after {orders_back:?}");
    for channel in [&stock.channel, &orders.channel] {
        e2e::eventually(Duration::from_secs(10), "SERVING again", || async {
            (serving(channel).await == Some(ServingStatus::Serving)).then_some(())
        })
        .await;
    }
    assert_eq!(got.available, 2, "K1, K2 from the ledger and K3");
    assert!(stock_back < Duration::from_secs(10));
    assert!(orders_back < Duration::from_secs(10));
    let report = stock.reconcile(tier_id).await;
    assert!(!report.drift, "{}", report.report);

    // A stop while Redis is down, with a call in flight, ends within the grace period.
    redis.kill();
    let in_flight = {
        let stock = stock.stock();
        tokio::spawn(async move {
            let mut stock = stock;
            stock
                .prededuct(admin(pb::PredeductRequest {
                    order_no: "K4".into(),
                    tier_id,
                    user_id: "late".into(),
                    quantity: 1,
                }))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    orders.stop().await;
    stock.halt().await;
    let stop_took = started.elapsed();
    eprintln!("stopped with Redis down in {stop_took:?}");
    assert!(
        stop_took < Duration::from_secs(15),
        "stop took {stop_took:?}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the call in flight ended");
}

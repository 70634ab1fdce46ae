//! The purchase saga end to end: all four services in this process, real Postgres, Redis and
//! RocketMQ (or gRPC, where a test says so).

#![recursion_limit = "512"]

use std::time::Duration;

use e2e::order::OrderApp;
use e2e::saga::{
    PURCHASE, every_saga_completes_once, forward_steps, impatient, order_at_once, pay, pay_each,
    purchase, restart_orchestrator, settings, steps,
};
use e2e::stock::admin;
use e2e::system::System;
use orchestrator::dispatch::Transport;
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::{CancelReason, OrderStatus};
use ticket_proto::saga::v1 as saga_pb;

async fn happy_path(transport: Transport) {
    let system = System::start(settings(Duration::from_secs(300)), transport).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system
        .order
        .create("alice", tier, 2, "buy-1")
        .await
        .expect("create");
    assert_eq!(order.status(), OrderStatus::Pending);

    let reserved = system
        .order_reaches(&order.order_no, OrderStatus::AwaitingPayment)
        .await;
    assert_eq!(
        (reserved.unit_price_cents, reserved.total_cents),
        (12_500, 25_000)
    );
    assert!(reserved.expire_at.is_some());
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (8, 2));

    pay(&system, &reserved).await;
    system
        .order_reaches(&order.order_no, OrderStatus::Confirmed)
        .await;
    let saga = system.saga_reaches(&order.order_no, "COMPLETED").await;
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (8, 0, 2)
    );

    let notifications = e2e::eventually(
        Duration::from_secs(30),
        "three notifications sent",
        || async {
            let n = system.notifications(&order.order_no).await;
            (n.len() == 3 && n.iter().all(|n| n.status == "SENT")).then_some(n)
        },
    )
    .await;
    // The log channel; the buyer gave no contact, so it names the buyer.
    assert!(notifications.iter().all(|n| n.recipient == "alice"
        && n.provider_id == "log"
        && n.body.contains(&order.order_no)));

    let history = steps(&saga);
    for step in [
        "STOCK_DEDUCT",
        "ORDER_RESERVE",
        "STOCK_CONFIRM",
        "ORDER_CONFIRM",
    ] {
        assert!(history.contains(&step.to_owned()), "{step} in {history:?}");
    }
    // The buyer is told on every channel by one step, after the confirmation.
    assert_eq!(history, [&PURCHASE[..], &["NOTIFY"]].concat());
    let expected_transport = match transport {
        Transport::RocketMq => "(rocketmq)",
        Transport::Grpc => "(grpc)",
    };
    assert!(
        saga.history
            .iter()
            .all(|s| s.command.ends_with(expected_transport)),
        "{saga:?}"
    );
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_confirmed_and_the_buyer_notified_over_rocketmq() {
    happy_path(Transport::RocketMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_confirmed_and_the_buyer_notified_over_grpc() {
    happy_path(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_who_waits_for_the_decision_gets_it_in_the_answer_over_the_synchronous_chain() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::Grpc).await;
    let tier = system.stock().tier(10, 2).await.tier_id;
    let decided = |request_id: &'static str, quantity: i32| {
        let mut orders = system.order.orders();
        async move {
            orders
                .create_order(pb::CreateOrderRequest {
                    user_id: "alice".into(),
                    tier_id: tier,
                    quantity,
                    request_id: request_id.into(),
                    wait_for_decision: true,
                    contact: None,
                })
                .await
                .expect("decided")
                .into_inner()
        }
    };
    let reserved = decided("sync-1", 2).await;
    assert_eq!(reserved.status(), OrderStatus::AwaitingPayment);
    assert_eq!(reserved.total_cents, 25_000, "{reserved:?}");
    // Alice holds her limit: her next order is decided as cancelled, and the answer says why.
    let refused = decided("sync-2", 1).await;
    assert_eq!(
        (refused.status(), refused.cancel_reason()),
        (OrderStatus::Cancelled, CancelReason::LimitReached)
    );
    // A repeat of a decided request answers with the order as it is.
    assert_eq!(decided("sync-1", 2).await.order_no, reserved.order_no);
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (8, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_beyond_the_stock_is_cancelled_as_sold_out_and_deducts_nothing() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(3, 4).await.tier_id;
    let first = system
        .order
        .create("first", tier, 2, "a")
        .await
        .expect("create");
    system
        .order_reaches(&first.order_no, OrderStatus::AwaitingPayment)
        .await;
    // order-svc's admission refuses this order at once (1 ticket left, 2 asked for); one
    // admitted without a promise (a replica with admission off, or promises Redis lost) reaches
    // the saga, whose prededuct refuses it.
    let unadmitted = OrderApp::start_configured(
        system.stock(),
        system.order.database.clone(),
        false,
        Some(&format!("http://{}", system.orchestrator_addr)),
        |config| config.admission_hold = Duration::ZERO,
    )
    .await;
    assert_eq!(
        system
            .order
            .create("second", tier, 2, "b")
            .await
            .expect_err("refused at once")
            .code(),
        tonic::Code::ResourceExhausted
    );
    let second = unadmitted
        .create("second", tier, 2, "b")
        .await
        .expect("create");
    let cancelled = system
        .order_reaches(&second.order_no, OrderStatus::Cancelled)
        .await;
    assert_eq!(cancelled.cancel_reason(), CancelReason::SoldOut);
    let saga = system.saga_reaches(&second.order_no, "COMPENSATED").await;
    // The refused deduct is rolled back too: an earlier attempt delivered late must not take
    // tickets the saga no longer owns (the empty rollback fences the order).
    assert_eq!(
        steps(&saga),
        ["STOCK_DEDUCT", "ORDER_CANCEL", "STOCK_ROLLBACK"]
    );
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted),
        (1, 2),
        "only the first order holds tickets"
    );
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyers_cancel_cancels_the_order_then_returns_the_stock() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system
        .order
        .create("bob", tier, 3, "c")
        .await
        .expect("create");
    system
        .order_reaches(&order.order_no, OrderStatus::AwaitingPayment)
        .await;
    system.order.cancel(&order.order_no).await;
    let saga = system.saga_reaches(&order.order_no, "COMPENSATED").await;
    assert_eq!(
        steps(&saga),
        [
            "STOCK_DEDUCT",
            "ORDER_RESERVE",
            "ORDER_CANCEL",
            "STOCK_ROLLBACK",
            "NOTIFY_CANCELLED"
        ]
    );
    let order = system.order.get(&order.order_no).await;
    assert_eq!(order.cancel_reason(), CancelReason::UserCancelled);
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (10, 0));
    // The buyer is told on every channel, in words.
    for told in system.told(&order.order_no, "order_cancelled").await {
        assert!(
            told.body.contains("cancelled: you cancelled it"),
            "{told:?}"
        );
    }
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_order_expires_and_its_stock_returns() {
    let system = System::start(settings(Duration::from_secs(2)), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system
        .order
        .create("carol", tier, 1, "d")
        .await
        .expect("create");
    system
        .order_reaches(&order.order_no, OrderStatus::AwaitingPayment)
        .await;
    let cancelled = system
        .order_reaches(&order.order_no, OrderStatus::Cancelled)
        .await;
    assert_eq!(cancelled.cancel_reason(), CancelReason::PaymentExpired);
    let saga = system.saga_reaches(&order.order_no, "COMPENSATED").await;
    // The order is cancelled, then the stock returns.
    assert_eq!(
        steps(&saga),
        [
            "STOCK_DEDUCT",
            "ORDER_RESERVE",
            "ORDER_CANCEL",
            "STOCK_ROLLBACK",
            "NOTIFY_CANCELLED"
        ]
    );
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (10, 0));
    for told in system.told(&order.order_no, "order_cancelled").await {
        assert!(
            told.body
                .contains("cancelled: the payment was not made before its deadline"),
            "{told:?}"
        );
    }
    let late = system
        .order
        .orders()
        .pay_order(pb::PayOrderRequest {
            order_no: order.order_no.clone(),
            payment_ref: "late".into(),
            amount_cents: cancelled.total_cents,
        })
        .await
        .expect_err("too late");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_paid_in_time_is_confirmed_though_the_orchestrator_hears_of_it_after_the_deadline()
{
    let window = Duration::from_secs(4);
    let mut system = System::start(settings(window), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system
        .order
        .create("erin", tier, 1, "e")
        .await
        .expect("create");
    let reserved = system
        .order_reaches(&order.order_no, OrderStatus::AwaitingPayment)
        .await;
    // The orchestrator is down while the buyer pays in time, and until the deadline and its
    // margin have passed: on restart the due timer and ORDER_PAID race. The timer's cancel is
    // refused (the order is paid), and the purchase goes on with nothing returned.
    let running = std::mem::replace(&mut system.orchestrator, e2e::system::Running::stopped());
    running.stop().await;
    let paid = pay(&system, &reserved).await;
    assert_eq!(paid.status(), OrderStatus::Paid);
    tokio::time::sleep(window + Duration::from_secs(4)).await;
    system.orchestrator = system.start_orchestrator().await;
    let saga = system.saga_reaches(&order.order_no, "COMPLETED").await;
    let mut done = forward_steps(&saga);
    if let Some(cancel) = saga.history.iter().find(|s| s.step == "ORDER_CANCEL") {
        assert_eq!(cancel.outcome, "REFUSED ORDER_PAID", "{saga:?}");
        done.retain(|s| s != "ORDER_CANCEL");
    }
    assert_eq!(done, PURCHASE, "{saga:?}");
    let confirmed = system
        .order_reaches(&order.order_no, OrderStatus::Confirmed)
        .await;
    assert_eq!(confirmed.cancel_reason(), CancelReason::Unspecified);
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (9, 0, 1)
    );
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_admin_needs_the_token_and_lists_sagas_by_state() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system.reserved_order("dave", tier, 1, "e").await;
    let denied = system
        .admin()
        .list_sagas(saga_pb::ListSagasRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    let listed = system
        .admin()
        .list_sagas(admin(saga_pb::ListSagasRequest {
            state: "WAITING".into(),
            page_size: 10,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.sagas.len(), 1);
    assert_eq!(listed.sagas[0].order_no, order.order_no);
    let bad = system
        .admin()
        .list_sagas(admin(saga_pb::ListSagasRequest {
            state: "SLEEPING".into(),
            page_size: 10,
            page_token: String::new(),
        }))
        .await
        .expect_err("unknown state");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_buyers_for_a_hundred_tickets_and_only_payers_keep_theirs() {
    use futures::future::join_all;
    use std::collections::HashMap;

    let system = System::start(settings(Duration::from_secs(20)), Transport::RocketMq).await;
    let tier = system.stock().tier(100, 4).await.tier_id;
    let attempts = (0..2_000).map(|i| {
        let system = &system;
        async move {
            system
                .order
                .create(&format!("buyer{i}"), tier, 1, &format!("r{i}"))
                .await
        }
    });
    let created: Vec<pb::Order> = join_all(attempts)
        .await
        .into_iter()
        .filter_map(|result| match result {
            Ok(order) => Some(order),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                None
            }
        })
        .collect();
    let started = std::time::Instant::now();
    println!("{} of 2000 buyers got an order", created.len());

    // Every saga reserves or cancels; 70% of the reserved buyers pay, the rest let it expire.
    let mut outcome: HashMap<String, bool> = HashMap::new();
    let mut paid = 0;
    for (i, order) in created.iter().enumerate() {
        let settled = e2e::eventually(Duration::from_secs(120), "the order settles", || async {
            let now = system.order.get(&order.order_no).await;
            matches!(
                now.status(),
                OrderStatus::AwaitingPayment | OrderStatus::Cancelled
            )
            .then_some(now)
        })
        .await;
        if settled.status() == OrderStatus::AwaitingPayment && i % 10 < 7 {
            let answer = system
                .order
                .orders()
                .pay_order(pb::PayOrderRequest {
                    order_no: settled.order_no.clone(),
                    payment_ref: format!("pay-{i}"),
                    amount_cents: settled.total_cents,
                })
                .await;
            outcome.insert(settled.order_no.clone(), answer.is_ok());
            paid += usize::from(answer.is_ok());
        }
    }
    println!("settled and paid after {:?}", started.elapsed());
    // Every saga ends in a final state.
    let sagas = e2e::eventually(Duration::from_secs(120), "every saga final", || async {
        let all = system.all_sagas().await;
        (all.len() == created.len()
            && all
                .iter()
                .all(|s| s.state == "COMPLETED" || s.state == "COMPENSATED"))
        .then_some(all)
    })
    .await;
    let statuses = system.order.statuses().await;
    let mut confirmed = 0;
    for saga in &sagas {
        let was_paid = outcome.get(&saga.order_no).copied().unwrap_or(false);
        let status = statuses.get(&saga.order_no).map(String::as_str);
        if was_paid {
            assert_eq!(saga.state, "COMPLETED");
            assert_eq!(status, Some("CONFIRMED"));
            confirmed += 1;
        } else {
            assert_eq!(saga.state, "COMPENSATED", "{saga:?}");
            assert_eq!(status, Some("CANCELLED"));
        }
    }
    println!("all sagas final after {:?}", started.elapsed());
    assert_eq!(confirmed, paid);
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.confirmed, stock.deducted),
        (i64::try_from(paid).expect("count"), 0),
        "exactly the paid orders hold tickets"
    );
    assert_eq!(
        stock.available + stock.deducted + stock.confirmed,
        stock.total
    );
    let report = system.stock().reconcile(tier).await;
    assert!(
        !report.drift,
        "Redis and the ledger agree: {}",
        report.report
    );
    let sold = system.stock().sold(tier).await;
    assert_eq!(sold, stock.confirmed, "Postgres sold follows the confirms");
    println!(
        "{paid} paid and confirmed; {} back in stock",
        stock.available
    );
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reply_and_event_delivered_twice_gives_the_same_outcome() {
    let system = System::start_with(
        settings(Duration::from_secs(300)),
        Transport::RocketMq,
        true,
    )
    .await;
    let tier = system.stock().tier(4, 4).await.tier_id;
    let bought = system.reserved_order("twice-a", tier, 2, "a").await;
    let dropped = system.reserved_order("twice-b", tier, 1, "b").await;
    pay(&system, &bought).await;
    system.order.cancel(&dropped.order_no).await;
    let done = system.saga_reaches(&bought.order_no, "COMPLETED").await;
    let undone = system.saga_reaches(&dropped.order_no, "COMPENSATED").await;
    // Give the duplicates time to arrive; they must change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (2, 0, 2)
    );
    assert!(!system.stock().reconcile(tier).await.drift);
    system.notified_once(&[&bought.order_no]).await;
    for saga in [&done, &undone] {
        let again = system.saga_of(&saga.order_no).await.expect("saga");
        assert_eq!(again.state, saga.state);
        assert!(
            again
                .history
                .iter()
                .all(|s| s.attempt == 1 && !s.outcome.is_empty()),
            "one attempt per step, each answered: {again:?}"
        );
    }
    assert_eq!(
        steps(&undone),
        [
            "STOCK_DEDUCT",
            "ORDER_RESERVE",
            "ORDER_CANCEL",
            "STOCK_ROLLBACK",
            "NOTIFY_CANCELLED"
        ]
    );
    assert_eq!(
        system.order.get(&bought.order_no).await.status(),
        OrderStatus::Confirmed
    );
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_stopped_mid_batch_finishes_every_saga_once_after_a_restart() {
    let mut system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(100, 4).await.tier_id;
    let orders = order_at_once(&system, tier, 40, "restart").await;
    // Stopped while the sagas are in flight, and started again on the same saga log.
    let running = std::mem::replace(&mut system.orchestrator, e2e::system::Running::stopped());
    running.stop().await;
    system.orchestrator = system.start_orchestrator().await;
    pay_each(&system, &orders).await;
    every_saga_completes_once(&system, &orders, tier).await;
    system.stop(&[tier]).await;
}

/// The orchestrator binary as a user runs it, configured from the environment on the
/// system's saga log, participants and RocketMQ namespace; killed when dropped.
struct OrchestratorProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl OrchestratorProcess {
    fn start(system: &System) -> Self {
        use std::io::{BufRead, BufReader};

        let stock = system.stock();
        let messaging = &stock.messaging;
        let saga = system.saga;
        let millis = |d: Duration| d.as_millis().to_string();
        let mut child = std::process::Command::new(e2e::binary("orchestrator"))
            .envs([
                ("TICKET_ORCHESTRATOR_GRPC__ADDR", "127.0.0.1:0".to_owned()),
                ("TICKET_ORCHESTRATOR_ADMIN__ADDR", "127.0.0.1:0".to_owned()),
                (
                    "TICKET_ORCHESTRATOR_DATABASE__URL",
                    system.orchestrator_database.url.clone(),
                ),
                (
                    "TICKET_ORCHESTRATOR_DATABASE__MAX_CONNECTIONS",
                    "8".to_owned(),
                ),
                (
                    "TICKET_ORCHESTRATOR_MESSAGING__NAME_SERVER",
                    messaging.name_server.clone(),
                ),
                (
                    "TICKET_ORCHESTRATOR_MESSAGING__NAMESPACE",
                    messaging.namespace.prefix().to_owned(),
                ),
                (
                    "TICKET_ORCHESTRATOR_MESSAGING__MAX_RECONSUME_TIMES",
                    messaging.max_reconsume_times.to_string(),
                ),
                (
                    "TICKET_ORCHESTRATOR_ADMIN_TOKEN",
                    e2e::stock::TOKEN.to_owned(),
                ),
                (
                    "TICKET_ORCHESTRATOR_SERVICE_TOKEN",
                    e2e::auth::SERVICE_TOKEN.to_owned(),
                ),
                (
                    "TICKET_ORCHESTRATOR_PARTICIPANTS__STOCK",
                    format!("http://{}", stock.addr),
                ),
                (
                    "TICKET_ORCHESTRATOR_PARTICIPANTS__ORDER",
                    format!("http://{}", system.order.addr),
                ),
                (
                    "TICKET_ORCHESTRATOR_PARTICIPANTS__NOTIFY",
                    format!("http://{}", system.notify.addr),
                ),
                (
                    "TICKET_ORCHESTRATOR_SAGA__STEP_TIMEOUT_MS",
                    millis(saga.step_timeout),
                ),
                (
                    "TICKET_ORCHESTRATOR_SAGA__MAX_ATTEMPTS",
                    saga.retry.max_attempts.to_string(),
                ),
                (
                    "TICKET_ORCHESTRATOR_SAGA__BACKOFF_MS",
                    millis(saga.retry.backoff),
                ),
                (
                    "TICKET_ORCHESTRATOR_SAGA__MAX_BACKOFF_MS",
                    millis(saga.retry.max_backoff),
                ),
                (
                    "TICKET_ORCHESTRATOR_SAGA__PAYMENT_WINDOW_MS",
                    millis(saga.payment_window),
                ),
                ("TICKET_ORCHESTRATOR_TIMERS__POLL_MS", "100".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the orchestrator binary");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a first line");
        let addr = line
            .trim()
            .strip_prefix("orchestrator listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("the orchestrator printed {line:?}"));
        // Whatever else it prints is read, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child, addr }
    }

    /// `kill -9`, as a crash would.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for OrchestratorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_batch_finishes_every_saga_once_after_a_restart() {
    let mut system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    // The orchestrator runs as a process of its own here, so it can be killed.
    let in_process = std::mem::replace(&mut system.orchestrator, e2e::system::Running::stopped());
    in_process.stop().await;
    let first = OrchestratorProcess::start(&system);
    system.orchestrator = e2e::system::Running::elsewhere(first.addr);
    let tier = system.stock().tier(100, 4).await.tier_id;
    // One purchase first, so every topic's route is settled and the batch moves quickly.
    let warm_up = purchase(&system, tier, "crash-warm-up").await;
    let orders = order_at_once(&system, tier, 40, "crash").await;
    // Killed as soon as a saga of the batch is under way, the others at every stage.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while system.all_sagas().await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no saga started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let mut reserved_at_the_crash = 0;
    for order in &orders {
        let now = system.order.get(&order.order_no).await;
        if now.status == OrderStatus::AwaitingPayment as i32 {
            reserved_at_the_crash += 1;
        }
    }
    eprintln!(
        "{reserved_at_the_crash} of {} orders were reserved when the orchestrator was killed",
        orders.len()
    );
    assert!(
        reserved_at_the_crash < orders.len(),
        "every saga had already reserved its order when the orchestrator was killed"
    );
    let second = OrchestratorProcess::start(&system);
    system.orchestrator = e2e::system::Running::elsewhere(second.addr);
    pay_each(&system, &orders).await;
    let mut all = orders;
    all.push(warm_up);
    every_saga_completes_once(&system, &all, tier).await;
    system.stop(&[tier]).await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orchestrator_replicas_share_the_sagas_and_run_each_once() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    // A second replica on the same saga log and consumer groups: the broker splits the queues
    // between the two, and a reply may reach the replica that did not send the command.
    let second = system.start_orchestrator_replica().await;
    let tier = system.stock().tier(100, 4).await.tier_id;
    // One purchase first, so the queues have settled between the replicas.
    let warm_up = purchase(&system, tier, "replica-warm-up").await;
    let mut orders = order_at_once(&system, tier, 40, "replica").await;
    pay_each(&system, &orders).await;
    orders.push(warm_up);
    every_saga_completes_once(&system, &orders, tier).await;
    second.stop().await;
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_saga_is_listed_inspected_and_retried_to_completion() {
    let mut system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system.reserved_order("erin", tier, 2, "p").await;
    let reserved = order.clone();
    // The orchestrator is restarted with short step timeouts and a budget of two attempts.
    restart_orchestrator(&mut system, impatient(Duration::from_secs(300))).await;

    // Past the pivot with stock-svc down: STOCK_CONFIRM times out twice and the saga parks.
    system.stop_stock().await;
    pay(&system, &reserved).await;
    let parked = system.saga_reaches(&order.order_no, "PARKED").await;
    assert!(parked.current_step.contains("STOCK_CONFIRM"), "{parked:?}");
    assert!(parked.current_step.contains("incident"), "{parked:?}");
    let listed = system
        .admin()
        .list_sagas(admin(saga_pb::ListSagasRequest {
            state: "PARKED".into(),
            page_size: 10,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.sagas.len(), 1);
    // The orchestrator's metrics say so too (read from the log every 5 s): the alert's gauge.
    let parked_now = r#"sagas_parked{saga_type="PURCHASE"}"#;
    let admin_port = system.orchestrator.admin;
    e2e::eventually(Duration::from_secs(15), "sagas_parked 1", || async {
        (e2e::admin_port::Scrape::of(admin_port)
            .await
            .value(parked_now)
            == 1.0)
            .then_some(())
    })
    .await;
    let attempts: Vec<u32> = parked
        .history
        .iter()
        .filter(|s| s.step == "STOCK_CONFIRM")
        .map(|s| s.attempt)
        .collect();
    assert_eq!(attempts, [1, 2]);
    let refused = system
        .admin()
        .compensate_saga(admin(saga_pb::SagaRef {
            saga_id: parked.saga_id.clone(),
            reason: "refund the buyer".into(),
        }))
        .await
        .expect_err("a paid saga is not compensated");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // The operator brings stock-svc back (it answers the queued attempts: late replies, which
    // change nothing) and retries.
    system.start_stock().await;
    e2e::eventually(
        Duration::from_secs(60),
        "stock-svc answering again",
        || async {
            let saga = system.saga_of(&order.order_no).await?;
            assert_eq!(saga.state, "PARKED", "a late reply changes nothing");
            saga.history
                .iter()
                .any(|s| s.step == "STOCK_CONFIRM" && s.outcome == "OK")
                .then_some(())
        },
    )
    .await;
    let retried = system
        .admin()
        .retry_saga(admin(saga_pb::SagaRef {
            saga_id: parked.saga_id.clone(),
            reason: "stock-svc is back".into(),
        }))
        .await
        .expect("retry")
        .into_inner();
    assert_ne!(retried.state, "PARKED");
    system.saga_reaches(&order.order_no, "COMPLETED").await;
    e2e::eventually(Duration::from_secs(15), "sagas_parked 0", || async {
        (e2e::admin_port::Scrape::of(admin_port)
            .await
            .value(parked_now)
            == 0.0)
            .then_some(())
    })
    .await;
    system
        .order_reaches(&order.order_no, OrderStatus::Confirmed)
        .await;
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.confirmed, stock.deducted), (2, 0));
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reply_is_a_dead_letter_an_operator_lists_and_redrives() {
    use std::sync::Arc;
    use ticket_platform::messaging::{MessagingRuntime, OutgoingMessage, Publisher, topic};

    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let runtime = MessagingRuntime::start(system.stock().messaging.clone()).expect("runtime");
    let publisher = Publisher::start(Arc::clone(&runtime), "test-bad-replies")
        .await
        .expect("publisher");
    let garbage = OutgoingMessage {
        payload: vec![0xff, 0x01, 0xff],
        ..OutgoingMessage::new(
            topic::SAGA_REPLY,
            "STOCK_DEDUCT",
            "T-garbage",
            &saga_pb::Reply::default(),
        )
    };
    let id = garbage.message_id.to_string();
    e2e::send(&publisher, &garbage).await;
    let listed = e2e::eventually(Duration::from_secs(30), "the dead letter", || async {
        let page = system
            .admin()
            .list_dead_letters(admin(saga_pb::ListDeadLettersRequest::default()))
            .await
            .ok()?
            .into_inner();
        page.dead_letters.into_iter().find(|d| d.message_id == id)
    })
    .await;
    assert!(listed.reason.contains("not a valid Reply"), "{listed:?}");
    assert_eq!(listed.topic, "SAGA_REPLY_TOPIC");
    assert!(!listed.redriven);

    let redriven = system
        .admin()
        .redrive_dead_letter(admin(saga_pb::RedriveDeadLetterRequest {
            message_id: id.clone(),
        }))
        .await
        .expect("redrive")
        .into_inner();
    assert!(redriven.redriven);
    let unknown = system
        .admin()
        .redrive_dead_letter(admin(saga_pb::RedriveDeadLetterRequest {
            message_id: "nope".into(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    publisher.shutdown().await;
    runtime.shutdown().await;
    system.stop(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_created_event_was_lost_gets_its_saga_from_the_sweeper() {
    use sea_orm::{ConnectionTrait, Statement};

    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let seen = system.reserved_order("ruth", tier, 1, "seen").await;
    // An order saved PENDING a minute ago whose ORDER_CREATED never reached the orchestrator
    // (dead-lettered, or lost with a broker's disk): no outbox row, no saga.
    let lost = "T0000000000000000LOST";
    system
        .order
        .db
        .execute_raw(Statement::from_sql_and_values(
            system.order.db.get_database_backend(),
            "INSERT INTO orders (order_no, user_id, request_id, show_id, session_id, tier_id, \
             quantity, status, created_at) \
             VALUES ($1, 'sam', 'lost', $2, $3, $4, 1, 'PENDING', now() - INTERVAL '1 minute')",
            [
                lost.into(),
                seen.show_id.into(),
                seen.session_id.into(),
                tier.into(),
            ],
        ))
        .await
        .expect("a lost order");
    assert!(system.saga_of(lost).await.is_none());
    let reserved = e2e::eventually(Duration::from_secs(30), "the sweeper", || async {
        let now = system.order.get(lost).await;
        (now.status() == OrderStatus::AwaitingPayment).then_some(now)
    })
    .await;
    pay(&system, &reserved).await;
    let saga = system.saga_reaches(lost, "COMPLETED").await;
    assert_eq!(forward_steps(&saga), PURCHASE);
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.deducted, stock.confirmed), (1, 1));
    system.stop(&[tier]).await;
}

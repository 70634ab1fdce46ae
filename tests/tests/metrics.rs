//! Every service's admin HTTP port: `/livez`, `/readyz` and its own `/metrics`, whose counters
//! move by exactly what a batch of purchases did (some paid, some expired, some sold out) and
//! whose histograms count every call.

#![recursion_limit = "512"]

use std::time::Duration;

use e2e::admin_port::{Scrape, get, grew};
use e2e::saga::{pay, settings};
use e2e::system::System;
use orchestrator::dispatch::Transport;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_answers_liveness_readiness_and_its_own_metrics() {
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let ports = [
        ("order-svc", system.order.admin),
        ("stock-svc", system.stock().admin),
        ("orchestrator", system.orchestrator.admin),
        ("notify-svc", system.notify.admin),
    ];
    for (name, admin) in ports {
        assert_ne!(admin.port(), 0, "{name} has an admin port");
        assert_eq!(get(admin, "/livez").await.0, 200, "{name} /livez");
        let ready = e2e::eventually(Duration::from_secs(10), "ready", || async {
            let (status, body) = get(admin, "/readyz").await;
            (status == 200).then_some(body)
        })
        .await;
        assert_eq!(ready, "ready\n", "{name}");
        assert_eq!(get(admin, "/nothing").await.0, 404, "{name}");
    }
    // A call to each service's own API shows in its registry and in no other.
    let missing = system
        .order
        .orders()
        .get_order(ticket_proto::order::v1::GetOrderRequest {
            order_no: "T00000000000000000000".into(),
        })
        .await
        .expect_err("no such order");
    assert_eq!(missing.code(), Code::NotFound);
    let order = Scrape::of(system.order.admin).await;
    let stock = Scrape::of(system.stock().admin).await;
    let missing = r#"grpc_server_requests_total{method="/ticket.order.v1.OrderService/GetOrder",code="NOT_FOUND"}"#;
    assert_eq!(order.value(missing), 1.0, "{}", order.0);
    assert_eq!(stock.value(missing), 0.0);
    for scrape in [&order, &stock] {
        assert!(
            scrape.families().iter().any(|f| f == "outbox_backlog_rows"),
            "the platform's metrics: {:?}",
            scrape.families()
        );
    }
    assert!(order.families().iter().any(|f| f == "orders_created"));
    assert!(!stock.families().iter().any(|f| f == "orders_created"));
    system.stop(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_move_by_exactly_what_a_batch_of_purchases_did() {
    let system = System::start(settings(Duration::from_secs(4)), Transport::RocketMq).await;
    let tier = system.stock().tier(5, 4).await.tier_id;
    let before = [
        Scrape::of(system.order.admin).await,
        Scrape::of(system.stock().admin).await,
        Scrape::of(system.orchestrator.admin).await,
        Scrape::of(system.notify.admin).await,
    ];

    // Five buyers get the five tickets; three pay, two let the deadline pass.
    let mut reserved = Vec::new();
    for i in 0..5 {
        reserved.push(
            system
                .reserved_order(&format!("buyer-{i}"), tier, 1, "r")
                .await,
        );
    }
    for order in &reserved[..3] {
        pay(&system, order).await;
    }
    // Two more come after the tickets are gone: refused at once, or accepted and then cancelled
    // as sold out by their saga.
    let (mut refused, mut late) = (0.0, Vec::new());
    for i in 5..7 {
        match system
            .order
            .create(&format!("buyer-{i}"), tier, 1, "r")
            .await
        {
            Ok(order) => late.push(order),
            Err(status) if status.code() == Code::ResourceExhausted => refused += 1.0,
            Err(status) => panic!("{status:?}"),
        }
    }
    for order in &reserved[..3] {
        system.saga_reaches(&order.order_no, "COMPLETED").await;
        system.told(&order.order_no, "purchase_confirmed").await;
    }
    for order in &reserved[3..] {
        system.saga_reaches(&order.order_no, "COMPENSATED").await;
        system.told(&order.order_no, "order_cancelled").await;
    }
    for order in &late {
        system.saga_reaches(&order.order_no, "COMPENSATED").await;
    }
    let late_n = late.len() as f64;
    // What is counted after a commit or a reply may trail the state a test reads by moments.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = [
        Scrape::of(system.order.admin).await,
        Scrape::of(system.stock().admin).await,
        Scrape::of(system.orchestrator.admin).await,
        Scrape::of(system.notify.admin).await,
    ];
    let [order_0, stock_0, orch_0, notify_0] = &before;
    let [order_1, stock_1, orch_1, notify_1] = &after;

    let create = "/ticket.order.v1.OrderService/CreateOrder";
    for (series, expected) in [
        ("orders_created_total".to_owned(), 5.0 + late_n),
        (
            r#"orders_refused_total{reason="sold_out"}"#.to_owned(),
            refused,
        ),
        ("orders_paid_total".to_owned(), 3.0),
        // The tier was asked of the catalog once, then remembered.
        (
            r#"grpc_client_requests_total{method="stock-svc/ticket.stock.v1.CatalogService/GetTier",code="OK"}"#
                .to_owned(),
            1.0,
        ),
        (
            r#"orders_cancelled_total{reason="PAYMENT_EXPIRED"}"#.to_owned(),
            2.0,
        ),
        (
            r#"orders_cancelled_total{reason="SOLD_OUT"}"#.to_owned(),
            late_n,
        ),
        (
            format!(r#"grpc_server_requests_total{{method="{create}",code="OK"}}"#),
            5.0 + late_n,
        ),
        (
            format!(r#"grpc_server_requests_total{{method="{create}",code="RESOURCE_EXHAUSTED"}}"#),
            refused,
        ),
        (
            format!(r#"grpc_server_request_seconds_count{{method="{create}"}}"#),
            7.0,
        ),
        (
            r#"mq_messages_sent_total{topic="ORDER_TOPIC",tag="ORDER_CREATED",outcome="ok"}"#
                .to_owned(),
            5.0 + late_n,
        ),
        (
            r#"mq_messages_sent_total{topic="ORDER_TOPIC",tag="ORDER_PAID",outcome="ok"}"#
                .to_owned(),
            3.0,
        ),
    ] {
        assert_eq!(
            grew(order_0, order_1, &series),
            expected,
            "order-svc {series}"
        );
    }
    // stock-svc's consumer runs the commands it consumed in batches: each consumed once in one.
    let stock_commands = grew(
        stock_0,
        stock_1,
        r#"mq_messages_consumed_total{topic="STOCK_TOPIC",group="stock-svc",outcome="ok"}"#,
    );
    assert!(stock_commands >= 5.0 + 3.0 + 2.0, "{stock_commands}");
    for (series, expected) in [
        (r#"stock_prededucts_total{outcome="DEDUCTED"}"#, 5.0),
        (r#"stock_prededucts_total{outcome="SOLD_OUT"}"#, late_n),
        (
            r#"participant_batch_commands_sum{group="stock-svc"}"#,
            stock_commands,
        ),
    ] {
        assert_eq!(
            grew(stock_0, stock_1, series),
            expected,
            "stock-svc {series}"
        );
    }
    for (series, expected) in [
        (r#"sagas_started_total{saga_type="PURCHASE"}"#, 5.0 + late_n),
        (
            r#"sagas_ended_total{saga_type="PURCHASE",state="COMPLETED",reason="none"}"#,
            3.0,
        ),
        (
            r#"sagas_ended_total{saga_type="PURCHASE",state="COMPENSATED",reason="PAYMENT_EXPIRED"}"#,
            2.0,
        ),
        (
            r#"sagas_ended_total{saga_type="PURCHASE",state="COMPENSATED",reason="SOLD_OUT"}"#,
            late_n,
        ),
        (
            r#"saga_duration_seconds_count{saga_type="PURCHASE",state="COMPLETED"}"#,
            3.0,
        ),
        (
            r#"saga_duration_seconds_count{saga_type="PURCHASE",state="COMPENSATED"}"#,
            2.0 + late_n,
        ),
        (
            r#"saga_step_seconds_count{saga_type="PURCHASE",step="STOCK_DEDUCT",outcome="OK"}"#,
            5.0,
        ),
        (
            r#"saga_step_seconds_count{saga_type="PURCHASE",step="ORDER_CONFIRM",outcome="OK"}"#,
            3.0,
        ),
        (
            r#"saga_step_seconds_count{saga_type="PURCHASE",step="ORDER_CANCEL",outcome="OK"}"#,
            2.0 + late_n,
        ),
        // The two payment deadlines that passed fired their timers; the others never fired.
        (
            r#"saga_timer_lateness_seconds_count{saga_type="PURCHASE",kind="DEADLINE"}"#,
            2.0,
        ),
    ] {
        assert_eq!(
            grew(orch_0, orch_1, series),
            expected,
            "orchestrator {series}"
        );
    }
    // The log is measured: the timers due and not fired, the sagas parked (none of either).
    for gauge in [
        r#"saga_timers_due{saga_type="PURCHASE"}"#,
        r#"sagas_parked{saga_type="PURCHASE"}"#,
    ] {
        assert!(orch_1.0.contains(gauge), "{gauge} is exported");
        assert_eq!(orch_1.value(gauge), 0.0, "{gauge}");
    }
    // One command, on three channels, for each of three confirmations and two cancellations.
    let consumed =
        r#"mq_messages_consumed_total{topic="NOTIFICATION_TOPIC",group="notify-svc",outcome="ok"}"#;
    let handled =
        r#"mq_message_handling_seconds_count{topic="NOTIFICATION_TOPIC",group="notify-svc"}"#;
    let delayed =
        r#"mq_consume_delay_seconds_count{topic="NOTIFICATION_TOPIC",group="notify-svc"}"#;
    for series in [consumed, handled, delayed] {
        assert_eq!(grew(notify_0, notify_1, series), 5.0, "notify-svc {series}");
    }
    // The fifteen notifications asked order-svc for the buyer's contact, those of one event
    // sent together once (notifications.rs counts that exactly), each call timed.
    let contacts = r#"grpc_client_requests_total{method="order-svc/ticket.order.v1.ContactService/GetContact",code="OK"}"#;
    let timed = r#"grpc_client_request_seconds_count{method="order-svc/ticket.order.v1.ContactService/GetContact"}"#;
    let asked = grew(notify_0, notify_1, contacts);
    assert!(
        (5.0..=15.0).contains(&asked),
        "notify-svc {contacts}: {asked}"
    );
    assert_eq!(grew(notify_0, notify_1, timed), asked, "notify-svc {timed}");
    system.stop(&[tier]).await;
}

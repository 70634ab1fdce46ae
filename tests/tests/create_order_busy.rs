//! order-svc offered more new orders at once than it takes (`limits.create_in_flight`): the
//! calls past the limit are refused at once with a retry delay and write nothing, and the
//! same requests sent again after the delay are taken.

use std::time::{Duration, Instant};

use e2e::admin_port::Scrape;
use e2e::order::OrderApp;
use e2e::stock::StockApp;
use tonic::Code;
use tonic_types::StatusExt;

const BUYERS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_orders_past_the_replicas_limit_are_refused_at_once_and_taken_when_sent_again() {
    let stock = StockApp::start().await;
    let tier = stock.tier(100, 4).await.tier_id;
    let orders = OrderApp::start_configured(
        &stock,
        e2e::fresh_database_config("t_order_").await,
        false,
        None,
        |config| {
            config.guard.in_flight = 1;
            config.guard.busy_retry = Duration::from_millis(30);
        },
    )
    .await;

    let started = Instant::now();
    let first = futures::future::join_all((0..BUYERS).map(|i| {
        let orders = &orders;
        async move {
            let answer = orders
                .create(&format!("busy-{i}"), tier, 1, &format!("r{i}"))
                .await;
            (i, answer)
        }
    }))
    .await;
    let mut again = Vec::new();
    for (i, answer) in first {
        match answer {
            Ok(order) => assert_eq!(order.user_id, format!("busy-{i}")),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("taking 1 new orders at once"),
                    "{}",
                    status.message()
                );
                let delay = status
                    .get_details_retry_info()
                    .and_then(|retry| retry.retry_delay)
                    .expect("a RetryInfo in the status details");
                assert_eq!(delay, Duration::from_millis(30));
                again.push(i);
            }
        }
    }
    println!(
        "{} of {BUYERS} refused at once in {:?}",
        again.len(),
        started.elapsed()
    );
    assert!(
        !again.is_empty(),
        "{BUYERS} orders at once, one place: some are refused"
    );
    // A refused call wrote nothing.
    assert_eq!(
        orders.statuses().await.len(),
        BUYERS - again.len(),
        "one order per call taken"
    );
    let metrics = Scrape::of(orders.admin).await;
    assert_eq!(
        metrics.value(r#"orders_refused_total{reason="busy"}"#),
        again.len() as f64
    );

    // Sent again one after the other after the delay, each is taken.
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in again {
        orders
            .create(&format!("busy-{i}"), tier, 1, &format!("r{i}"))
            .await
            .unwrap_or_else(|status| panic!("buyer {i} sent again: {status:?}"));
    }
    assert_eq!(orders.statuses().await.len(), BUYERS);
    orders.stop().await;
    stock.stop(&[tier]).await;
}

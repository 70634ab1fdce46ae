//! Helpers of the saga tests: settings with short timings, one buyer's purchase, a batch of
//! orders placed at once, paying, and reading a saga's history.

use std::time::Duration;

use orchestrator::saga::definition::RetryPolicy;
use orchestrator::saga::purchase::SagaSettings;
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::OrderStatus;
use ticket_proto::saga::v1 as saga_pb;

use crate::system::System;

pub fn settings(payment_window: Duration) -> SagaSettings {
    SagaSettings {
        step_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        },
        payment_window,
        expiry_margin: Duration::from_secs(2),
    }
}

/// The forward steps of a completed purchase.
pub const PURCHASE: [&str; 4] = [
    "STOCK_DEDUCT",
    "ORDER_RESERVE",
    "STOCK_CONFIRM",
    "ORDER_CONFIRM",
];

/// [`steps`] without the notification (its step, `NOTIFY`, comes last).
pub fn forward_steps(saga: &saga_pb::Saga) -> Vec<String> {
    steps(saga).into_iter().filter(|s| s != "NOTIFY").collect()
}

/// The steps of a saga's history in order, a retried step once.
pub fn steps(saga: &saga_pb::Saga) -> Vec<String> {
    let mut steps: Vec<String> = saga.history.iter().map(|s| s.step.clone()).collect();
    steps.dedup();
    steps
}

/// Every order of `orders` (one ticket each, of a tier of 100) ends in a completed saga that
/// ran each forward step once, holds its ticket, and its buyer is notified once.
pub async fn every_saga_completes_once(system: &System, orders: &[pb::Order], tier: i64) {
    for order in orders {
        system.saga_reaches(&order.order_no, "COMPLETED").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stock = system.stock().stock_of(tier).await;
    let sold = i64::try_from(orders.len()).expect("a few orders");
    assert_eq!(
        (stock.confirmed, stock.deducted, stock.available),
        (sold, 0, 100 - sold)
    );
    for order in orders {
        let saga = system.saga_of(&order.order_no).await.expect("saga");
        let mut unique = forward_steps(&saga);
        unique.dedup();
        assert_eq!(unique, PURCHASE, "{saga:?}");
    }
    let numbers: Vec<&str> = orders.iter().map(|o| o.order_no.as_str()).collect();
    system.notified_once(&numbers).await;
}

/// `count` buyers (`<prefix><i>`) order one ticket each of `tier`, all at once.
pub async fn order_at_once(
    system: &System,
    tier: i64,
    count: usize,
    prefix: &str,
) -> Vec<pb::Order> {
    let creates = (0..count).map(|i| async move {
        system
            .order
            .create(&format!("{prefix}{i}"), tier, 1, "r")
            .await
            .expect("create")
    });
    futures::future::join_all(creates).await
}

/// Pays each of `orders` once it awaits payment.
pub async fn pay_each(system: &System, orders: &[pb::Order]) {
    for order in orders {
        let reserved = system
            .order_reaches(&order.order_no, OrderStatus::AwaitingPayment)
            .await;
        pay(system, &reserved).await;
    }
}

/// One buyer's whole purchase of one ticket: ordered, paid, its saga completed.
pub async fn purchase(system: &System, tier: i64, buyer: &str) -> pb::Order {
    let order = system
        .order
        .create(buyer, tier, 1, "r")
        .await
        .expect("create");
    pay_each(system, std::slice::from_ref(&order)).await;
    system.saga_reaches(&order.order_no, "COMPLETED").await;
    order
}

pub async fn pay(system: &System, order: &pb::Order) -> pb::Order {
    system
        .order
        .orders()
        .pay_order(pb::PayOrderRequest {
            order_no: order.order_no.clone(),
            payment_ref: format!("pay-{}", order.order_no),
            amount_cents: order.total_cents,
        })
        .await
        .expect("pay")
        .into_inner()
}

/// Settings that park a saga quickly: steps time out after 700 ms and have two attempts.
pub fn impatient(payment_window: Duration) -> SagaSettings {
    SagaSettings {
        step_timeout: Duration::from_millis(700),
        retry: RetryPolicy {
            max_attempts: 2,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(200),
        },
        payment_window,
        expiry_margin: Duration::from_secs(2),
    }
}

/// Stops the system's orchestrator and starts it again on the same saga log with `saga`.
pub async fn restart_orchestrator(system: &mut System, saga: SagaSettings) {
    system.saga = saga;
    let running = std::mem::replace(&mut system.orchestrator, crate::system::Running::stopped());
    running.stop().await;
    system.orchestrator = system.start_orchestrator().await;
}

/// The attempts of `step` in a saga's history, in order.
pub fn attempts(saga: &saga_pb::Saga, step: &str) -> Vec<u32> {
    saga.history
        .iter()
        .filter(|s| s.step == step)
        .map(|s| s.attempt)
        .collect()
}

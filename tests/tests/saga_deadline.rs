//! The payment deadline against everything that can race it: a payment whose transaction is
//! still open at the deadline, payments within milliseconds of it, a buyer's cancel, and a
//! saga whose row another transaction holds while other sagas' deadlines come due.

#![recursion_limit = "512"]

use std::time::Duration;

use e2e::saga::{order_at_once, settings, steps};
use e2e::system::System;
use orchestrator::dispatch::Transport;
use orchestrator::saga::purchase::SagaSettings;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, TransactionTrait};
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::{CancelReason, OrderStatus};

/// A transaction of the test's own that holds `FOR UPDATE` on the rows `sql` selects (`$1`
/// is `key`) until it is rolled back.
async fn hold_row(db: &sea_orm::DatabaseConnection, sql: &str, key: &str) -> DatabaseTransaction {
    let txn = db.begin().await.expect("begin");
    let locked = txn
        .execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            sql,
            [key.into()],
        ))
        .await
        .expect("lock")
        .rows_affected();
    assert_eq!(locked, 1, "{sql} locks one row");
    txn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_still_committing_at_the_deadline_keeps_its_tickets_or_is_refused() {
    let window = Duration::from_secs(4);
    let system = System::start(settings(window), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system.reserved_order("hank", tier, 1, "h").await;

    // The buyer pays in time, but the payment's transaction cannot commit: the test holds the
    // order's row. It stays blocked until the saga has acted on the deadline.
    let lock = hold_row(
        &system.order.db,
        "SELECT 1 FROM orders WHERE order_no = $1 FOR UPDATE",
        &order.order_no,
    )
    .await;
    let payment = {
        let mut orders = system.order.orders();
        let request = pb::PayOrderRequest {
            order_no: order.order_no.clone(),
            payment_ref: format!("pay-{}", order.order_no),
            amount_cents: order.total_cents,
        };
        tokio::spawn(async move { orders.pay_order(request).await })
    };
    e2e::eventually(
        Duration::from_secs(60),
        "the saga acts on the deadline",
        || async {
            let saga = system.saga_of(&order.order_no).await?;
            steps(&saga)
                .iter()
                .any(|s| s == "ORDER_CANCEL")
                .then_some(())
        },
    )
    .await;
    // Give whatever the saga sends next time to happen while the payment is still blocked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    lock.rollback().await.expect("release the order's row");
    let paid = payment.await.expect("payment task");

    let final_state = e2e::eventually(Duration::from_secs(60), "a final saga", || async {
        let saga = system.saga_of(&order.order_no).await?;
        assert_ne!(saga.state, "PARKED", "the saga parked: {saga:?}");
        (saga.state == "COMPLETED" || saga.state == "COMPENSATED").then_some(saga.state)
    })
    .await;
    let stock = system.stock().stock_of(tier).await;
    let now = system.order.get(&order.order_no).await;
    match paid {
        Ok(_) => {
            assert_eq!(final_state, "COMPLETED");
            let confirmed = system
                .order_reaches(&order.order_no, OrderStatus::Confirmed)
                .await;
            assert_eq!(confirmed.status(), OrderStatus::Confirmed);
            assert_eq!(
                (stock.available, stock.deducted, stock.confirmed),
                (9, 0, 1),
                "the paid buyer keeps the ticket"
            );
        }
        Err(refused) => {
            assert_eq!(
                refused.code(),
                tonic::Code::FailedPrecondition,
                "{refused:?}"
            );
            assert_eq!(final_state, "COMPENSATED");
            assert_eq!(now.status(), OrderStatus::Cancelled);
            assert_eq!(now.cancel_reason(), CancelReason::PaymentExpired);
            assert_eq!(
                (stock.available, stock.deducted, stock.confirmed),
                (10, 0, 0),
                "the ticket is back"
            );
        }
    }
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_held_by_another_transaction_does_not_stall_the_other_deadlines() {
    let window = Duration::from_secs(3);
    let system = System::start(settings(window), Transport::RocketMq).await;
    let tier = system.stock().tier(20, 4).await.tier_id;
    let held = system.reserved_order("ida", tier, 1, "held").await;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(
            system
                .reserved_order(&format!("ida{i}"), tier, 1, "other")
                .await,
        );
    }
    // The first saga's row is held (as a slow transaction would) across every deadline.
    let saga_log = ticket_platform::db::connect(&system.orchestrator_database)
        .await
        .expect("connect to the saga log");
    let lock = hold_row(
        &saga_log,
        "SELECT 1 FROM saga WHERE order_no = $1 FOR UPDATE",
        &held.order_no,
    )
    .await;
    for order in &others {
        let expired = e2e::eventually(
            Duration::from_secs(30),
            "another saga's deadline fires",
            || async {
                let now = system.order.get(&order.order_no).await;
                (now.status() == OrderStatus::Cancelled).then_some(now)
            },
        )
        .await;
        assert_eq!(expired.cancel_reason(), CancelReason::PaymentExpired);
    }
    assert_eq!(
        system.order.get(&held.order_no).await.status(),
        OrderStatus::AwaitingPayment
    );
    lock.rollback().await.expect("release the saga's row");
    system.saga_reaches(&held.order_no, "COMPENSATED").await;
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (20, 0));
    system.stop(&[tier]).await;
}

/// Settings with no margin after the deadline: the saga's cancel races the payments.
fn racing(window: Duration) -> SagaSettings {
    SagaSettings {
        expiry_margin: Duration::ZERO,
        ..settings(window)
    }
}

/// Pays `order` once it awaits payment, `offset_ms` from its deadline; whether it was paid.
async fn pay_near_the_deadline(system: &System, order: &pb::Order, offset_ms: i64) -> bool {
    // Polled gently: two hundred buyers wait at once, and the deadline is seconds away.
    let reserved = loop {
        let now = system.order.get(&order.order_no).await;
        if now.status() == OrderStatus::AwaitingPayment {
            break now;
        }
        assert_eq!(now.status(), OrderStatus::Pending, "{now:?}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    };
    let deadline = reserved
        .expire_at
        .as_ref()
        .and_then(ticket_platform::time::instant)
        .expect("a deadline");
    let at = deadline + chrono::Duration::milliseconds(offset_ms);
    if let Ok(wait) = (at - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    system
        .order
        .orders()
        .pay_order(pb::PayOrderRequest {
            order_no: reserved.order_no.clone(),
            payment_ref: format!("pay-{}", reserved.order_no),
            amount_cents: reserved.total_cents,
        })
        .await
        .is_ok()
}

/// The buyer cancels and pays at the same moment; whether the payment won.
async fn cancel_while_paying(system: &System, order: &pb::Order) -> bool {
    let reserved = system
        .order_reaches(&order.order_no, OrderStatus::AwaitingPayment)
        .await;
    let mut payer = system.order.orders();
    let mut canceller = system.order.orders();
    let (paid, cancelled) = tokio::join!(
        payer.pay_order(pb::PayOrderRequest {
            order_no: reserved.order_no.clone(),
            payment_ref: format!("pay-{}", reserved.order_no),
            amount_cents: reserved.total_cents,
        }),
        canceller.cancel_order(pb::CancelOrderRequest {
            order_no: reserved.order_no.clone(),
            reason: "raced".into(),
        })
    );
    assert!(
        paid.is_ok() != cancelled.is_ok(),
        "exactly one of a payment and a cancel wins: {paid:?} {cancelled:?}"
    );
    paid.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_at_the_deadline_and_cancels_racing_payments_never_lose_or_oversell_tickets() {
    use futures::future::join_all;

    let system = System::start(racing(Duration::from_secs(8)), Transport::RocketMq).await;
    let tier = system.stock().tier(400, 4).await.tier_id;
    let near = order_at_once(&system, tier, 200, "deadline").await;
    let raced = order_at_once(&system, tier, 100, "raced").await;
    // Payments spread over ±50 ms around each order's own deadline.
    let near_paid = join_all(near.iter().enumerate().map(|(i, order)| {
        let offset = i64::try_from(i % 101).expect("small") - 50;
        pay_near_the_deadline(&system, order, offset)
    }));
    let raced_paid = join_all(
        raced
            .iter()
            .map(|order| cancel_while_paying(&system, order)),
    );
    let (near_paid, raced_paid) = tokio::join!(near_paid, raced_paid);

    let mut paid = std::collections::HashSet::new();
    for (order, was_paid) in near
        .iter()
        .zip(&near_paid)
        .chain(raced.iter().zip(&raced_paid))
    {
        if *was_paid {
            paid.insert(order.order_no.clone());
        }
    }
    println!(
        "{} of 200 paid near the deadline, {} of 100 won against the buyer's cancel",
        near_paid.iter().filter(|p| **p).count(),
        raced_paid.iter().filter(|p| **p).count()
    );
    let sagas = e2e::eventually(Duration::from_secs(120), "every saga final", || async {
        let all = system.all_sagas().await;
        if let Some(parked) = all.iter().find(|s| s.state == "PARKED") {
            panic!("a saga parked: {parked:?}");
        }
        (all.len() == 300
            && all
                .iter()
                .all(|s| s.state == "COMPLETED" || s.state == "COMPENSATED"))
        .then_some(all)
    })
    .await;
    let statuses = system.order.statuses().await;
    for saga in &sagas {
        let status = statuses.get(&saga.order_no).map(String::as_str);
        if paid.contains(&saga.order_no) {
            assert_eq!(saga.state, "COMPLETED", "{saga:?}");
            assert_eq!(status, Some("CONFIRMED"), "{saga:?}");
        } else {
            assert_eq!(saga.state, "COMPENSATED", "{saga:?}");
            assert_eq!(status, Some("CANCELLED"), "{saga:?}");
        }
    }
    let stock = system.stock().stock_of(tier).await;
    let confirmed = i64::try_from(paid.len()).expect("count");
    assert_eq!(
        (stock.confirmed, stock.deducted, stock.available),
        (confirmed, 0, 400 - confirmed),
        "exactly the paid orders hold tickets; every other ticket is back"
    );
    let sold = system.stock().sold(tier).await;
    assert_eq!(sold, confirmed, "sold == tickets in confirmed orders");
    let report = system.stock().reconcile(tier).await;
    assert!(!report.drift, "{}", report.report);
    system.stop(&[tier]).await;
}

//! Operator actions on parked sagas, end to end: compensate, retry and skip through
//! `SagaAdmin`, and the same through `ticketctl saga` run as a process.

#![recursion_limit = "512"]

use std::time::Duration;

use e2e::saga::{attempts, impatient, pay, restart_orchestrator, settings};
use e2e::stock::admin;
use e2e::system::System;
use orchestrator::dispatch::Transport;
use ticket_proto::order::v1::{CancelReason, OrderStatus};
use ticket_proto::saga::v1 as saga_pb;

fn saga_ref(saga_id: &str) -> tonic::Request<saga_pb::SagaRef> {
    admin(saga_pb::SagaRef {
        saga_id: saga_id.to_owned(),
        ..Default::default()
    })
}

/// stock-svc back after an outage, and an orchestrator that calls it at its new address.
async fn bring_stock_back(system: &mut System) {
    system.start_stock().await;
    let saga = system.saga;
    restart_orchestrator(system, saga).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_parked_in_its_compensation_gets_its_tickets_back_when_an_operator_compensates() {
    // Over gRPC: a call to a stopped stock-svc fails at once, and nothing is left queued that
    // could return the tickets behind the operator's back.
    let mut system = System::start(settings(Duration::from_secs(300)), Transport::Grpc).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system.reserved_order("frank", tier, 2, "c").await;
    restart_orchestrator(&mut system, impatient(Duration::from_secs(300))).await;

    // The buyer cancels while stock-svc is down: the stock cannot come back, and the saga
    // parks in the middle of its compensation.
    system.stop_stock().await;
    system.order.cancel(&order.order_no).await;
    let parked = system.saga_reaches(&order.order_no, "PARKED").await;
    assert!(parked.current_step.contains("STOCK_ROLLBACK"), "{parked:?}");

    bring_stock_back(&mut system).await;
    let held = system.stock().stock_of(tier).await;
    assert_eq!((held.available, held.deducted), (8, 2), "still held");
    system
        .admin()
        .compensate_saga(saga_ref(&parked.saga_id))
        .await
        .expect("compensate");
    system.saga_reaches(&order.order_no, "COMPENSATED").await;
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (10, 0, 0),
        "the tickets are back"
    );
    let cancelled = system.order.get(&order.order_no).await;
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason(), CancelReason::UserCancelled);
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_saga_gets_a_fresh_retry_budget() {
    let mut system = System::start(settings(Duration::from_secs(300)), Transport::Grpc).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let order = system.reserved_order("gina", tier, 2, "r").await;
    restart_orchestrator(&mut system, impatient(Duration::from_secs(300))).await;

    // Past the pivot with stock-svc down: STOCK_CONFIRM fails twice and the saga parks.
    system.stop_stock().await;
    pay(&system, &order).await;
    let parked = system.saga_reaches(&order.order_no, "PARKED").await;
    assert_eq!(attempts(&parked, "STOCK_CONFIRM"), [1, 2], "{parked:?}");

    // Retried while stock-svc is still down: two more attempts (a fresh budget), then parked
    // again.
    let retried = system
        .admin()
        .retry_saga(saga_ref(&parked.saga_id))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.state, "RUNNING");
    let again = e2e::eventually(Duration::from_secs(30), "parked again", || async {
        let saga = system.saga_of(&order.order_no).await?;
        (saga.state == "PARKED" && saga.version > retried.version).then_some(saga)
    })
    .await;
    assert_eq!(attempts(&again, "STOCK_CONFIRM"), [1, 2, 3, 4], "{again:?}");

    bring_stock_back(&mut system).await;
    system
        .admin()
        .retry_saga(saga_ref(&parked.saga_id))
        .await
        .expect("retry");
    system.saga_reaches(&order.order_no, "COMPLETED").await;
    system
        .order_reaches(&order.order_no, OrderStatus::Confirmed)
        .await;
    let stock = system.stock().stock_of(tier).await;
    assert_eq!((stock.confirmed, stock.deducted), (2, 0));
    system.stop(&[tier]).await;
}

/// `ticketctl saga <args>` against the system's orchestrator, as an operator runs it: its exit
/// status and what it printed.
fn ticketctl(system: &System, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(e2e::binary("ticketctl"))
        .arg("saga")
        .args(args)
        .args(["--addr", &format!("http://{}", system.orchestrator.addr)])
        .env("TICKET_ADMIN_TOKEN", e2e::stock::TOKEN)
        .output()
        .expect("run ticketctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticketctl_retries_compensates_and_skips_parked_sagas() {
    let mut system = System::start(settings(Duration::from_secs(300)), Transport::Grpc).await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    let retried = system.reserved_order("ola", tier, 1, "r").await;
    let skipped = system.reserved_order("pia", tier, 2, "s").await;
    let compensated = system.reserved_order("quin", tier, 3, "c").await;
    restart_orchestrator(&mut system, impatient(Duration::from_secs(300))).await;

    // With stock-svc down, two paid sagas park at STOCK_CONFIRM and a cancelled one in its
    // compensation.
    system.stop_stock().await;
    pay(&system, &retried).await;
    pay(&system, &skipped).await;
    system.order.cancel(&compensated.order_no).await;
    let mut parked = Vec::new();
    for order in [&retried, &skipped, &compensated] {
        parked.push(system.saga_reaches(&order.order_no, "PARKED").await);
    }
    bring_stock_back(&mut system).await;

    // Refusals change nothing and say why.
    let (ok, text) = ticketctl(&system, &["compensate", &parked[0].saga_id]);
    assert!(!ok && text.contains("pivot"), "{text}");
    let (ok, text) = ticketctl(&system, &["skip", &parked[1].saga_id, "--reason", ""]);
    assert!(!ok && text.contains("reason"), "{text}");
    assert_eq!(
        system
            .saga_of(&compensated.order_no)
            .await
            .expect("saga")
            .state,
        "PARKED"
    );

    let (ok, text) = ticketctl(
        &system,
        &["retry", &parked[0].saga_id, "--reason", "stock-svc is back"],
    );
    assert!(ok, "{text}");
    assert!(text.contains(&parked[0].saga_id), "{text}");

    // The operator confirmed the second order's stock by hand, then skips the step.
    system
        .stock()
        .stock()
        .confirm(admin(ticket_proto::stock::v1::ConfirmRequest {
            order_no: skipped.order_no.clone(),
            tier_id: tier,
        }))
        .await
        .expect("confirmed by hand");
    let (ok, text) = ticketctl(
        &system,
        &["skip", &parked[1].saga_id, "--reason", "confirmed by hand"],
    );
    assert!(ok, "{text}");

    let (ok, text) = ticketctl(
        &system,
        &[
            "compensate",
            &parked[2].saga_id,
            "--reason",
            "buyer refunded",
        ],
    );
    assert!(ok, "{text}");

    system.saga_reaches(&retried.order_no, "COMPLETED").await;
    let done = system.saga_reaches(&skipped.order_no, "COMPLETED").await;
    system
        .saga_reaches(&compensated.order_no, "COMPENSATED")
        .await;
    for order in [&retried, &skipped] {
        system
            .order_reaches(&order.order_no, OrderStatus::Confirmed)
            .await;
    }
    let stock = system.stock().stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (7, 0, 3),
        "the cancelled order's tickets are back; the paid ones are sold"
    );
    assert_eq!(done.actions.len(), 1, "{done:?}");
    assert_eq!(
        (
            done.actions[0].action.as_str(),
            done.actions[0].step.as_str()
        ),
        ("SKIP", "STOCK_CONFIRM")
    );
    assert_eq!(done.actions[0].reason, "confirmed by hand");
    let (ok, text) = ticketctl(&system, &["show", &skipped.order_no]);
    assert!(ok, "{text}");
    assert!(
        text.contains("operator SKIP") && text.contains("confirmed by hand"),
        "{text}"
    );
    let (ok, text) = ticketctl(&system, &["skip", &parked[1].saga_id, "--reason", "again"]);
    assert!(!ok && text.contains("COMPLETED"), "{text}");
    system.stop(&[tier]).await;
}

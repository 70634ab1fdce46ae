//! `ticketctl demo`, the main job of `scripts/run.sh`, against the four service binaries: it
//! sells its sale, waits until every order and every saga is final, and finds the stock and the
//! ledger matching the confirmed orders. A cancelled order's tickets go back in the saga's last
//! step, after the order shows CANCELLED: a demo that checked the stock once the orders were
//! final (and not the sagas) failed now and then with tickets still held.

use std::time::Duration;

use e2e::processes::{Dependencies, ProcessSystem, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_sells_waits_for_every_saga_and_finds_the_stock_matching() {
    let system = ProcessSystem::start(Dependencies::shared(16), Duration::from_secs(5)).await;
    let (order, stock, orchestrator) = (
        system.url(Service::Order),
        system.url(Service::Stock),
        system.url(Service::Orchestrator),
    );
    let stdout = e2e::ticketctl([
        "demo",
        "--tickets",
        "60",
        "--buyers",
        "600",
        "--concurrency",
        "100",
        "--order",
        &order,
        "--stock",
        &stock,
        "--orchestrator",
        &orchestrator,
        "--token",
        e2e::stock::TOKEN,
        "--buyer-secret",
        e2e::auth::BUYER_SECRET,
        "--payment-token",
        e2e::auth::PAYMENT_TOKEN,
    ]);
    assert!(stdout.contains("every order and saga is final"), "{stdout}");
    assert!(stdout.contains("Redis and the ledger agree"), "{stdout}");
    system.stop().await;
}

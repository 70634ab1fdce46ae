//! A saga log of a test's own and orchestrator engines on it, without the rest of the system:
//! Postgres only, the commands the sagas decide stay in the outbox (the participants' gRPC
//! addresses lead nowhere).

use std::time::Duration;

use orchestrator::dispatch::{Dispatcher, ParticipantAddrs, Transport};
use orchestrator::saga::engine::Engine;
use orchestrator::saga::purchase::{Purchase, PurchaseData, SagaSettings};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;
use ticket_platform::db::DatabaseConfig;
use ticket_proto::saga::v1::{Reply, ReplyOutcome, StockDeducted, reply};

/// A fresh database (named `<prefix><12 hex>`) with the orchestrator's schema.
pub async fn fresh(prefix: &str) -> (DatabaseConfig, DatabaseConnection) {
    let config = crate::fresh_database_config(prefix).await;
    let db = ticket_platform::db::connect(&config)
        .await
        .expect("connect");
    orchestrator::migration::Migrator::up(&db, None)
        .await
        .expect("migrate");
    (config, db)
}

/// A fresh database with the orchestrator's schema as it was before `migration` (its name):
/// to leave what an older version left, then upgrade.
pub async fn before(migration: &str) -> (DatabaseConfig, DatabaseConnection) {
    let config = crate::fresh_database_config("t_orch_").await;
    let db = ticket_platform::db::connect(&config)
        .await
        .expect("connect");
    let migrations = orchestrator::migration::Migrator::migrations();
    let before = migrations
        .iter()
        .position(|m| m.name() == migration)
        .unwrap_or_else(|| panic!("no migration {migration}"));
    orchestrator::migration::Migrator::up(&db, Some(u32::try_from(before).expect("a count")))
        .await
        .expect("the older schema");
    (config, db)
}

/// An engine (a replica of the orchestrator) on `db`.
pub fn engine(db: &DatabaseConnection, settings: &SagaSettings) -> Engine<Purchase> {
    let addrs = ParticipantAddrs {
        stock: "http://127.0.0.1:9".into(),
        order: "http://127.0.0.1:9".into(),
        notify: "http://127.0.0.1:9".into(),
    };
    let dispatcher = Dispatcher::start(
        db.clone(),
        Transport::RocketMq,
        &addrs,
        crate::auth::SERVICE_TOKEN,
        Duration::ZERO,
        &ticket_platform::grpc_client::Clients::default(),
    )
    .expect("dispatcher");
    Engine::new(db.clone(), Purchase::new(settings), dispatcher)
}

/// The number a query returns in its column `n`.
pub async fn number(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    row.try_get("", "n").expect("n")
}

/// Purchase `i` of one ticket of tier 1 by `buyer<i>`: its order number (`<prefix>` and `i`
/// in 20 digits) and the saga's data.
pub fn order(prefix: &str, i: usize) -> (String, PurchaseData) {
    let data = PurchaseData {
        user_id: format!("buyer{i}"),
        tier_id: 1,
        quantity: 1,
        unit_price_cents: None,
        cancel_reason: None,
        reserved: false,
    };
    (format!("{prefix}{i:020}"), data)
}

/// The OK reply to `attempt` of a saga's STOCK_DEDUCT (at 42.00 a ticket).
pub fn deducted(saga_id: &str, attempt: u32) -> Reply {
    ok_reply(
        saga_id,
        "STOCK_DEDUCT",
        attempt,
        Some(reply::Body::StockDeducted(StockDeducted {
            unit_price_cents: 4_200,
            available: 1,
        })),
    )
}

/// The OK reply to a saga's first ORDER_RESERVE.
pub fn reserved(saga_id: &str) -> Reply {
    answered(saga_id, "ORDER_RESERVE", 1)
}

/// The OK reply, without a body, to `attempt` of a saga's `step`.
pub fn answered(saga_id: &str, step: &str, attempt: u32) -> Reply {
    ok_reply(saga_id, step, attempt, None)
}

fn ok_reply(saga_id: &str, step: &str, attempt: u32, body: Option<reply::Body>) -> Reply {
    Reply {
        saga_id: saga_id.to_owned(),
        order_no: String::new(),
        step: step.into(),
        attempt,
        outcome: ReplyOutcome::Ok as i32,
        reason: String::new(),
        detail: String::new(),
        body,
    }
}

//! Helpers of the whole-system tests: fresh Postgres databases, a private RocketMQ namespace
//! per test, and waiting for a condition with a deadline. Everything here talks to the real
//! stack that `scripts/stack.sh up` starts.
#![forbid(unsafe_code)]

pub mod admin_port;
pub mod auth;
pub mod broker;
pub mod http_receiver;
pub mod order;
pub mod postgres;
pub mod processes;
pub mod redis;
pub mod running;
pub mod saga;
pub mod saga_log;
pub mod smtp_server;
pub mod stock;
pub mod system;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use ticket_platform::db::{self, DatabaseConfig};
use ticket_platform::messaging::{MessagingConfig, MessagingRuntime, Namespace};

/// The Postgres server the tests use (`TICKET_TEST_POSTGRES` overrides).
pub fn postgres_server() -> String {
    std::env::var("TICKET_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".into())
}

/// The name server the tests use (`TICKET_TEST_NAME_SERVER` overrides).
pub fn name_server() -> String {
    std::env::var("TICKET_TEST_NAME_SERVER").unwrap_or_else(|_| "127.0.0.1:9876".into())
}

/// The Redis the tests use (`TICKET_TEST_REDIS` overrides).
pub fn redis_url() -> String {
    std::env::var("TICKET_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The path of one of the workspace's binaries, built next to the test that asks.
pub fn binary(name: &str) -> std::path::PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("test path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// The tests' Python (`TICKET_TEST_PYTHON`, set by `scripts/test.sh`; its virtual environment
/// holds aiosmtpd and the deployment tools).
pub fn test_python() -> std::path::PathBuf {
    std::env::var("TICKET_TEST_PYTHON")
        .unwrap_or_else(|_| {
            format!(
                "{}/.cache/ticket-test-venv/bin/python",
                std::env::var("HOME").unwrap_or_default()
            )
        })
        .into()
}

/// A tool `scripts/test.sh` installed beside the tests' Python (hadolint, kubectl,
/// kubernetes-validate, grpcurl).
pub fn test_tool(name: &str) -> std::path::PathBuf {
    let path = test_python().with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: `scripts/test.sh` installs it",
        path.display()
    );
    path
}

/// The workspace's root directory.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// Runs this build's `ticketctl` with `args` as an operator would, prints its output, and
/// returns its stdout; fails the test when it exits non-zero.
pub fn ticketctl<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = std::process::Command::new(binary("ticketctl"))
        .args(args)
        .output()
        .expect("run ticketctl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "ticketctl failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// A short unique name, usable in database, topic and group names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A database of its own, created on the test server.
pub async fn fresh_database_config(prefix: &str) -> DatabaseConfig {
    fresh_database_on(&postgres_server(), prefix).await
}

/// [`fresh_database_config`] on the Postgres server `server` (`postgres://user:pw@host:port`).
pub async fn fresh_database_on(server: &str, prefix: &str) -> DatabaseConfig {
    let url = format!("{server}/{}", unique(prefix));
    db::create_database(&url)
        .await
        .expect("create a test database (is `scripts/stack.sh up` running?)");
    // Small pools: several whole systems (four services each) run at once against one
    // Postgres and its 100 connections.
    DatabaseConfig {
        url,
        max_connections: 8,
        migrate_on_start: true,
        // Longer than a service's default: a whole system in one test process, beside other
        // tests, on 2 cores, can queue for a connection longer than 3 s under a sale.
        acquire_timeout: Duration::from_secs(10),
    }
}

/// A service's settings for a test: a free port on 127.0.0.1, the tests' tokens under the `dev`
/// profile ([`auth::access`]), warnings only in its log.
pub fn service_config(
    name: &str,
    database: DatabaseConfig,
    messaging: MessagingConfig,
) -> ticket_platform::service::ServiceConfig {
    ticket_platform::service::ServiceConfig {
        grpc_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        access: auth::access(),
        grpc: ticket_platform::transport::GrpcConfig::default(),
        database,
        messaging,
        telemetry: ticket_platform::telemetry::TelemetryConfig {
            service_name: name.into(),
            log: "warn".into(),
            otlp_endpoint: String::new(),
        },
    }
}

/// The platform's tables (outbox, inbox, dead letters) and a test `effect` table.
pub struct TestMigrator;

impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        ticket_platform::migration::platform_migrations()
    }
}

/// A fresh database with the platform's tables and an `effect` table, where handlers of the
/// tests record what they did: `(message_id, times)`.
pub async fn fresh_platform_database() -> DatabaseConnection {
    let config = fresh_database_config("t_mq_").await;
    let conn = db::connect(&config).await.expect("connect");
    TestMigrator::up(&conn, None).await.expect("migrate");
    conn.execute_unprepared(
        "CREATE TABLE effect (message_id TEXT PRIMARY KEY, times INTEGER NOT NULL)",
    )
    .await
    .expect("effect table");
    conn
}

/// Messaging settings in a namespace of the test's own.
pub fn messaging_config(max_reconsume_times: i32) -> MessagingConfig {
    MessagingConfig {
        name_server: name_server(),
        namespace: Namespace::new(&format!("{}_", unique("t"))).expect("valid namespace"),
        max_reconsume_times,
        ..MessagingConfig::default()
    }
}

pub fn messaging(max_reconsume_times: i32) -> Arc<MessagingRuntime> {
    MessagingRuntime::start(messaging_config(max_reconsume_times)).expect("RocketMQ client runtime")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// stock-svc settings for a test: its own database, RocketMQ namespace and Redis key prefix
/// (tier ids restart at 1 in every fresh database, and the tests share one Redis).
pub fn stock_config(service: ticket_platform::service::ServiceConfig) -> stock_svc::Config {
    stock_svc::Config {
        service,
        redis_url: redis_url(),
        redis_connections: 8,
        redis_key_prefix: unique("test-stock-"),
        ledger_writers: 4,
        drift_interval: Duration::ZERO,
    }
}

/// order-svc settings for a test: tiers from the stock-svc at `catalog_addr`, sold-out flags
/// under its Redis `key_prefix`. With an `orchestrator` address, order events the broker does
/// not take go there over gRPC after 1 s, and orders left `PENDING` 10 s are swept; without
/// one (order-svc alone), neither runs.
pub fn order_config(
    service: ticket_platform::service::ServiceConfig,
    catalog_addr: &str,
    key_prefix: &str,
    orchestrator: Option<&str>,
) -> order_svc::Config {
    let (orchestrator_addr, fallback, sweep) = match orchestrator {
        Some(addr) => (
            addr.to_owned(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        ),
        None => (
            "http://127.0.0.1:9".to_owned(),
            Duration::ZERO,
            Duration::ZERO,
        ),
    };
    order_svc::Config {
        service,
        catalog_addr: catalog_addr.to_owned(),
        redis_url: redis_url(),
        redis_connections: 4,
        redis_key_prefix: key_prefix.to_owned(),
        orchestrator_addr,
        // Buyer limits off: tests create many orders for one buyer; `access.rs` turns them on.
        guard: order_svc::guard::GuardConfig {
            buyers: auth::buyer_tokens(),
            payment_token: auth::PAYMENT_TOKEN.into(),
            per_buyer: ticket_platform::rate_limit::Rate::OFF,
            per_peer: ticket_platform::rate_limit::Rate::OFF,
        },
        events_fallback_after: fallback,
        sweep_pending_after: Duration::from_secs(10),
        sweep_interval: sweep,
        admission_hold: Duration::from_secs(30),
        decision_wait: Duration::from_secs(10),
    }
}

/// A free port on 127.0.0.1 (for a service that others must know the address of before it
/// starts), reserved for this test process until it ends (see [`reserve_ports`]).
pub fn free_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<PortReservation>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        if let Some(reserved) = reserve_ports([port]) {
            HELD.lock().expect("the reserved ports").push(reserved);
            return port;
        }
    }
    panic!("no free port that no other test holds");
}

/// Ports held by one test process (an advisory lock on a file per port), released when
/// dropped or when the process ends.
pub struct PortReservation {
    _locks: Vec<std::fs::File>,
}

/// Reserves `ports` across the test processes of a run, or `None` when another holds one of
/// them. A dependency a test kills (a broker, Redis, Postgres) frees its ports at the OS level
/// while its clients still know them: another test's dependency started on those ports would
/// take those clients (a broker there once carried a "broker down" test's messages).
pub fn reserve_ports(ports: impl IntoIterator<Item = u16>) -> Option<PortReservation> {
    let dir = std::env::temp_dir().join("ticket-test-ports");
    std::fs::create_dir_all(&dir).ok()?;
    let mut held = Vec::new();
    for port in ports {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
            .ok()?;
        file.try_lock().ok()?;
        held.push(file);
    }
    Some(PortReservation { _locks: held })
}

/// orchestrator settings for a test: participants at the given gRPC addresses, the test's
/// admin token, and `saga` timings.
pub fn orchestrator_config(
    service: ticket_platform::service::ServiceConfig,
    participants: orchestrator::dispatch::ParticipantAddrs,
    saga: orchestrator::saga::purchase::SagaSettings,
    transport: orchestrator::dispatch::Transport,
) -> orchestrator::Config {
    orchestrator::Config {
        service,
        transport,
        participants,
        saga,
        timer_poll: Duration::from_millis(100),
        batches: orchestrator::Batches::default(),
        fallback_after: Duration::from_secs(1),
        dead_letter_groups: orchestrator::dead_letters::SYSTEM_GROUPS
            .iter()
            .chain(&[DOOMED_GROUP])
            .map(|g| (*g).to_owned())
            .collect(),
    }
}

/// A consumer group of the tests whose handler never succeeds; the test systems' orchestrator
/// reads its `%DLQ%` with the system's own groups.
pub const DOOMED_GROUP: &str = "doomed";

/// Publishes `message`, trying again a few times: a producer's first send to a topic that was
/// created a moment ago can fail while the broker settles its route. A message the broker did
/// store before a failure is delivered twice with one `message_id`, which consumers skip.
pub async fn send(
    publisher: &ticket_platform::messaging::Publisher,
    message: &ticket_platform::messaging::OutgoingMessage,
) {
    let mut last = None;
    for _ in 0..10 {
        match publisher.publish(message).await {
            Ok(()) => return,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("publish failed 10 times: {last:?}");
}

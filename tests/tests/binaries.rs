//! The service binaries as a user runs them: they start from environment settings, report
//! every configuration problem at once, and exit cleanly on SIGTERM and on Ctrl-C (SIGINT).

#![recursion_limit = "512"]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{binary, fresh_database_config, unique};

async fn start(name: &str, prefix: &str) -> (Child, String) {
    let database = fresh_database_config("t_bin_").await;
    let mut child = Command::new(binary(name))
        .env(format!("{prefix}_GRPC__ADDR"), "127.0.0.1:0")
        .env(format!("{prefix}_ADMIN__ADDR"), "127.0.0.1:0")
        .env(format!("{prefix}_DATABASE__URL"), &database.url)
        .env(
            format!("{prefix}_MESSAGING__NAMESPACE"),
            format!("{}_", unique("t")),
        )
        // The development profile: its default tokens (production needs them given).
        .env(format!("{prefix}_PROFILE"), "dev")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader")
    .expect("a first line");
    assert!(line.contains("listening on"), "{name} printed {line:?}");
    (child, line)
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_exits_cleanly_on_sigterm() {
    let (mut child, _) = start("order-svc", "TICKET_ORDER").await;
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_exits_cleanly_on_ctrl_c() {
    let (mut child, _) = start("notify-svc", "TICKET_NOTIFY").await;
    signal(&child, "-INT");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

#[test]
fn every_configuration_problem_is_reported_at_once() {
    let output = Command::new(binary("stock-svc"))
        .env("TICKET_STOCK_GRPC__ADDR", "not-an-address")
        .env("TICKET_STOCK_MESSAGING__CONSUME_BATCH", "0")
        .env("TICKET_STOCK_MESSAGING__NAMESPACE", "has space")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Outside the development profile no token has a default: each missing one is named,
    // with how to set it.
    for key in [
        "grpc.addr",
        "messaging.consume_batch",
        "messaging.namespace",
        "admin_token (set with TICKET_STOCK_ADMIN_TOKEN): is not set",
        "service_token (set with TICKET_STOCK_SERVICE_TOKEN): is not set",
        "TICKET_STOCK_PROFILE = dev",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
    assert!(stderr.contains("5 configuration error(s)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_only_migrates_and_exits() {
    let database = fresh_database_config("t_bin_").await;
    let output = Command::new(binary("orchestrator"))
        .arg("migrate")
        .env("TICKET_ORCHESTRATOR_DATABASE__URL", &database.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("database migrated"));
    let db = ticket_platform::db::connect(&database)
        .await
        .expect("connect");
    let tables = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT tablename FROM pg_tables WHERE tablename IN ('outbox', 'inbox', 'dead_letter')",
        ),
    )
    .await
    .expect("query");
    assert_eq!(tables.len(), 3);
}

/// Pods of a rollout (and the migration Job) migrate one database at once: they take turns
/// under an advisory lock, and every one of them ends with the schema in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_at_once_by_several_pods_all_succeed() {
    for (name, prefix) in [
        ("orchestrator", "TICKET_ORCHESTRATOR"),
        ("notify-svc", "TICKET_NOTIFY"),
    ] {
        let database = fresh_database_config("t_bin_").await;
        let migrators: Vec<Child> = (0..4)
            .map(|_| {
                Command::new(binary(name))
                    .arg("migrate")
                    .env(format!("{prefix}_DATABASE__URL"), &database.url)
                    .env("RUST_LOG", "error")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for migrator in migrators {
            let output = migrator.wait_with_output().expect("wait");
            assert!(
                output.status.success(),
                "{name} migrate failed beside the others: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

//! The operations kit under `k8s/monitoring/`: the alert rules pass `promtool check rules`, the
//! dashboard is valid JSON, and every metric either names is one the services export (read
//! from their `/metrics` after a paid, a cancelled and a refused purchase).

#![recursion_limit = "512"]

use std::path::PathBuf;
use std::time::Duration;

use e2e::admin_port::Scrape;
use e2e::saga::{pay, settings};
use e2e::system::System;
use orchestrator::dispatch::Transport;

fn kit(file: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s/monitoring")
        .join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (path, text)
}

/// The metric names in PromQL text: the words that start like this project's metrics.
fn metric_names(promql: &str) -> Vec<String> {
    const PREFIXES: [&str; 7] = [
        "mq_", "outbox_", "grpc_", "orders_", "sagas_", "saga_", "stock_",
    ];
    let mut names: Vec<String> = promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| PREFIXES.iter().any(|p| word.starts_with(p)))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool() {
    let (path, _) = kit("alerts.rules.yaml");
    let output = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool: {err}; scripts/test.sh installs it (apt-get install \
                 --no-install-recommends prometheus)"
            )
        });
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 6 rules found"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let (_, rules) = kit("alerts.rules.yaml");
    let (_, dashboard) = kit("dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut named = metric_names(&rules);
    named.extend(exprs.iter().flat_map(|e| metric_names(e)));
    named.sort();
    named.dedup();
    assert!(named.len() >= 15, "{named:?}");

    // A sale in small: one buyer pays, one cancels, one is refused (sold out).
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(2, 4).await.tier_id;
    let paid = system.reserved_order("payer", tier, 1, "p").await;
    let cancelled = system.reserved_order("canceller", tier, 1, "c").await;
    // Both tickets are held: a third buyer is refused (at once, or by the saga).
    if let Ok(order) = system.order.create("late", tier, 1, "l").await {
        system.saga_reaches(&order.order_no, "COMPENSATED").await;
    }
    pay(&system, &paid).await;
    system.order.cancel(&cancelled.order_no).await;
    system.saga_reaches(&paid.order_no, "COMPLETED").await;
    system
        .saga_reaches(&cancelled.order_no, "COMPENSATED")
        .await;
    system.told(&paid.order_no, "purchase_confirmed").await;
    let scrapes = [
        Scrape::of(system.order.admin).await,
        Scrape::of(system.stock().admin).await,
        Scrape::of(system.orchestrator.admin).await,
        Scrape::of(system.notify.admin).await,
    ];
    let exported = |name: &str| {
        scrapes.iter().any(|scrape| {
            scrape.0.lines().any(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
        })
    };
    // A word that is a label's name (`by (saga_type)`) is not a metric.
    let label = |name: &str| scrapes.iter().any(|s| s.0.contains(&format!("{name}=\"")));
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| !label(name) && !exported(name))
        .collect();
    assert!(
        missing.is_empty(),
        "named by the rules or the dashboard but not exported: {missing:?}"
    );
    system.stop(&[tier]).await;
}

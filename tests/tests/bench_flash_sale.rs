//! `ticketctl bench flash-sale --spawn` as an operator runs it: it starts the four service
//! binaries on the shared stack, sells a small flash sale, stops them, and its JSON report
//! holds every figure and says every correctness check passed. Timings are not asserted.

// serde_json's `Value`, as sea-orm re-exports it (this crate has no JSON dependency of its own).
use sea_orm::entity::prelude::Json;

/// `report` at the path of keys `path`, failing the test when it is absent.
fn field<'a>(report: &'a Json, path: &[&str]) -> &'a Json {
    path.iter().fold(report, |value, key| {
        value
            .get(key)
            .unwrap_or_else(|| panic!("the report has no {}", path.join(".")))
    })
}

/// Runs `ticketctl bench <args>` against the shared stack (its admin token, name server,
/// Postgres and Redis) and returns the JSON report it wrote.
fn bench_report(prefix: &str, args: &[&str]) -> Json {
    let json = std::env::temp_dir().join(format!("{}.json", e2e::unique(prefix)));
    let json_arg = json.display().to_string();
    let (name_server, postgres, redis) =
        (e2e::name_server(), e2e::postgres_server(), e2e::redis_url());
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--token",
        e2e::stock::TOKEN,
        "--name-server",
        &name_server,
        "--postgres",
        &postgres,
        "--redis",
        &redis,
        "--json",
        &json_arg,
    ]);
    e2e::ticketctl(all);
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    let _ = std::fs::remove_file(&json);
    text.parse().expect("the report is JSON")
}

#[tokio::test]
async fn a_spawned_flash_sale_sells_correctly_and_reports_every_figure() {
    let report = bench_report(
        "bench-flash-sale-",
        &[
            "flash-sale",
            "--spawn",
            "--buyers",
            "300",
            "--tickets",
            "50",
            "--concurrency",
            "50",
            "--payment-window-secs",
            "5",
        ],
    );

    let checks = field(&report, &["checks"]).as_array().expect("a list");
    assert!(checks.len() >= 5, "{checks:?}");
    for check in checks {
        assert_eq!(check.get("passed"), Some(&Json::Bool(true)), "{check}");
    }
    assert_eq!(field(&report, &["all_passed"]), &Json::Bool(true));

    let count = |path: &[&str]| field(&report, path).as_u64().expect("a count");
    assert_eq!(
        count(&["refused_at_once"]) + count(&["accepted"]),
        300,
        "every buyer was refused at once or accepted"
    );
    assert!(count(&["paid"]) <= 50, "no more paid than on sale");
    for path in [
        &["attempts_per_sec"][..],
        &["create_order_ms", "p50"],
        &["create_order_ms", "p90"],
        &["create_order_ms", "p99"],
        &["create_order_ms", "max"],
        &["decision_ms", "p50"],
        &["decision_ms", "p99"],
        &["paid_to_confirmed_ms", "p50"],
        &["paid_to_confirmed_ms", "p99"],
        &["completed_sagas_per_sec"],
        &["over_acceptance", "orders"],
        &["over_acceptance", "percent_of_supply"],
        &["messages", "per_paid_saga"],
        &["messages", "per_saga"],
        &["messages", "consume_delay_p50_ms"],
        &["messages", "consume_delay_p99_ms"],
        &["messages", "relay_delay_p50_ms"],
        &["messages", "relay_delay_p99_ms"],
    ] {
        field(&report, path);
    }
    // Every accepted order's decision, stage by stage, adds up to the whole.
    let stages = field(&report, &["messages", "decision_stages"]);
    let measured = field(stages, &["orders"]).as_u64().expect("a count");
    assert!(
        measured > 0 && measured <= count(&["accepted"]),
        "{measured} orders' stages of {} accepted",
        count(&["accepted"])
    );
    let stages = field(stages, &["stages"]).as_array().expect("a list");
    let mean = |stage: &Json| field(stage, &["mean_ms"]).as_f64().expect("a mean");
    let (whole, parts) = stages.split_last().expect("stages");
    let sum: f64 = parts.iter().map(mean).sum();
    assert!(
        parts.len() == 9 && (sum - mean(whole)).abs() < 1.0,
        "the stages' means add up to {sum} ms, the whole is {} ms: {stages:?}",
        mean(whole)
    );
    let services = field(&report, &["resources"]).as_array().expect("a list");
    assert_eq!(services.len(), 4, "every spawned service measured");
    for service in services {
        for key in ["service", "idle_rss_mib", "peak_rss_mib", "sale_cpu_secs"] {
            assert!(service.get(key).is_some(), "{service} has no {key}");
        }
    }
}

#[tokio::test]
async fn a_compare_sells_the_same_sale_both_ways_correctly_and_reports_the_ratios() {
    let report = bench_report(
        "bench-compare-",
        &[
            "compare",
            "--no-ceilings",
            "--buyers",
            "200",
            "--tickets",
            "40",
            "--concurrency",
            "40",
            "--payment-window-secs",
            "5",
        ],
    );
    for (design, synchronous) in [("asynchronous", false), ("synchronous", true)] {
        assert_eq!(
            field(&report, &[design, "all_passed"]),
            &Json::Bool(true),
            "{design}"
        );
        assert_eq!(
            field(&report, &[design, "setup", "synchronous"]),
            &Json::Bool(synchronous)
        );
        let count = |path: &[&str]| field(&report, path).as_u64().expect("a count");
        assert_eq!(
            count(&[design, "refused_at_once"]) + count(&[design, "accepted"]),
            200,
            "{design}: every buyer was refused at once or accepted"
        );
        field(&report, &[design, "send_to_decision_ms", "p99"]);
    }
    for ratio in [
        "create_order_p50_ratio",
        "create_order_p99_ratio",
        "attempts_per_sec_ratio",
    ] {
        assert!(field(&report, &[ratio]).as_f64().is_some(), "{ratio}");
    }
}

#[tokio::test]
async fn an_open_loop_sale_brings_every_buyer_at_its_rate_and_sells_correctly() {
    // 200 buyers at 100 a second: the last arrives about 2 s after the first, whatever the
    // sagas of the first are doing.
    let report = bench_report(
        "bench-open-loop-",
        &[
            "flash-sale",
            "--spawn",
            "--buyers",
            "200",
            "--tickets",
            "30",
            "--rate",
            "100",
            "--payment-window-secs",
            "5",
        ],
    );
    assert_eq!(field(&report, &["all_passed"]), &Json::Bool(true));
    assert_eq!(
        field(&report, &["setup", "arrivals_per_sec"]).as_f64(),
        Some(100.0)
    );
    let count = |path: &[&str]| field(&report, path).as_u64().expect("a count");
    assert_eq!(
        count(&["refused_at_once"]) + count(&["accepted"]),
        200,
        "every buyer was refused at once or accepted"
    );
    // The buyers came at their rate: the sale cannot have been decided before the last
    // arrived (199 / 100 s after the first).
    let decided_in = field(&report, &["decided_in_secs"])
        .as_f64()
        .expect("seconds");
    assert!(decided_in >= 1.99, "every buyer decided in {decided_in} s");
    assert!(
        field(&report, &["attempts_per_sec"])
            .as_f64()
            .expect("a rate")
            <= 100.5,
        "no faster than the buyers came"
    );
}

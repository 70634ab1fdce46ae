//! Where an accepted order's decision spends its time, stage by stage, from the outbox and
//! inbox rows `super::messages` read, the orchestrator's saga log and the buyer's own clock
//! (one host, one clock). The decision runs:
//!
//! 1. order-svc writes ORDER_CREATED with the order; its relay round begins;
//! 2. the orchestrator starts the saga on it, writing STOCK_DEDUCT; its relay round begins;
//! 3. stock-svc handles the deduct, writing its reply; its relay round begins;
//! 4. the orchestrator handles the reply, writing ORDER_RESERVE; its relay round begins;
//! 5. order-svc handles it (the order is reserved or cancelled); the buyer's WatchOrder sees it.
//!
//! Every time is Postgres's `now()` of the transaction that wrote it (so a handler's time
//! starts when its transaction began) except the last, the buyer's. "Relay wait" is a row
//! written to the start of the relay round that published it; "publish → handled" is that
//! round's start to the start of the handler's transaction on the other side: the publish, the
//! broker, the consumer's pull and hand-over. Only first attempts count, and only orders whose
//! every stage is on record.

use std::collections::HashMap;

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use ticket_platform::messaging::tag;

use super::messages::Sent;
use super::spawn::Service;
use crate::bench::percentile_ms;

/// One stage of the decision over the orders measured.
#[derive(Debug, Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The means add up to the whole decision's mean.
    pub mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct DecisionStages {
    /// Orders with every stage on record.
    pub orders: usize,
    pub stages: Vec<Stage>,
}

const NAMES: [&str; 10] = [
    "order-svc relay wait (ORDER_CREATED)",
    "publish → orchestrator handles ORDER_CREATED",
    "orchestrator relay wait (STOCK_DEDUCT)",
    "publish → stock-svc handles STOCK_DEDUCT",
    "stock-svc handler + relay wait (its reply)",
    "publish → orchestrator handles the reply",
    "orchestrator relay wait (ORDER_RESERVE)",
    "publish → order-svc handles ORDER_RESERVE",
    "order-svc handled → the buyer's WatchOrder sees it",
    "all: ORDER_CREATED written → decision seen",
];

/// A saga's start and its deduct's first reply, as the orchestrator's log has them (µs since
/// the epoch).
pub struct SagaTimes {
    pub started_us: i64,
    pub deduct_replied_us: Option<i64>,
}

/// Every saga's times, by order number, from the orchestrator's database.
pub async fn saga_times(conn: &DatabaseConnection) -> anyhow::Result<HashMap<String, SagaTimes>> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT s.order_no, \
             (EXTRACT(EPOCH FROM s.created_at) * 1000000)::int8 AS started_us, \
             (EXTRACT(EPOCH FROM t.replied_at) * 1000000)::int8 AS replied_us \
             FROM saga s LEFT JOIN saga_step t ON t.saga_id = s.saga_id \
               AND t.step = 'STOCK_DEDUCT' AND t.attempt = 1",
        ))
        .await
        .context("read the saga log")?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("", "order_no")?,
                SagaTimes {
                    started_us: row.try_get("", "started_us")?,
                    deduct_replied_us: row.try_get("", "replied_us")?,
                },
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .context("a saga row")
}

/// The stages of the orders in `decided` (order number → when the buyer saw the decision, µs
/// since the epoch), from the sale's outbox rows (`sent`, by the service whose outbox), the
/// inbox rows (`handled`: message id → the services that handled it, when) and the sagas.
pub fn measure(
    sent: &[(Service, Sent)],
    handled: &HashMap<String, Vec<(Service, i64)>>,
    sagas: &HashMap<String, SagaTimes>,
    decided: &HashMap<String, i64>,
) -> DecisionStages {
    // The first attempt of each (service, tag, order).
    let first: HashMap<(Service, &str, &str), &Sent> = sent
        .iter()
        .filter(|(_, row)| row.attempt <= 1)
        .map(|(service, row)| ((*service, row.tag.as_str(), row.key.as_str()), row))
        .collect();
    let handled_by = |row: &Sent, service: Service| {
        handled
            .get(&row.message_id)?
            .iter()
            .find(|(by, _)| *by == service)
            .map(|(_, at)| *at)
    };
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); NAMES.len()];
    for (order_no, seen) in decided {
        let points = || -> Option<[i64; 10]> {
            let at = |service, tag| first.get(&(service, tag, order_no.as_str())).copied();
            let created = at(Service::Order, tag::ORDER_CREATED)?;
            let saga = sagas.get(order_no)?;
            let deduct = at(Service::Orchestrator, tag::STOCK_DEDUCT)?;
            let reply = at(Service::Stock, tag::STOCK_DEDUCT)?;
            let reserve = at(Service::Orchestrator, tag::ORDER_RESERVE)?;
            Some([
                created.created_us,
                created.sent_us?,
                saga.started_us,
                deduct.sent_us?,
                handled_by(deduct, Service::Stock)?,
                reply.sent_us?,
                saga.deduct_replied_us?,
                reserve.sent_us?,
                handled_by(reserve, Service::Order)?,
                *seen,
            ])
        };
        let Some(mut points) = points() else { continue };
        // A stage starts when the one before it ended, or later: a relay round's `sent_at` is
        // the start of its transaction, which may claim a row committed after it began.
        for i in 1..points.len() {
            points[i] = points[i].max(points[i - 1]);
        }
        for (i, pair) in points.windows(2).enumerate() {
            samples[i].push(u64::try_from(pair[1] - pair[0]).unwrap_or(0));
        }
        samples[NAMES.len() - 1].push(u64::try_from(points[9] - points[0]).unwrap_or(0));
    }
    let orders = samples[0].len();
    let stages = NAMES
        .iter()
        .zip(samples)
        .map(|(name, mut us)| {
            us.sort_unstable();
            let mean_ms = us.iter().sum::<u64>() as f64 / us.len().max(1) as f64 / 1000.0;
            Stage {
                name,
                p50_ms: percentile_ms(&us, 50.0),
                p99_ms: percentile_ms(&us, 99.0),
                mean_ms,
            }
        })
        .collect();
    DecisionStages { orders, stages }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(message_id: &str, tag: &str, attempt: i32, created_us: i64, sent_us: i64) -> Sent {
        Sent {
            message_id: message_id.into(),
            key: "T1".into(),
            tag: tag.into(),
            attempt,
            created_us,
            sent_us: Some(sent_us),
        }
    }

    /// Order T1's decision, its stages' means in ms: its ORDER_CREATED row (`created`), then a
    /// deduct, its reply and the reservation, each published and handled on its way, decided
    /// at 45 ms; `extra` is one more row written, not on the decision's path.
    fn one_order(created: Sent, extra: Option<(Service, Sent)>) -> Vec<f64> {
        let mut sent = vec![
            (Service::Order, created),
            (
                Service::Orchestrator,
                row("d", "STOCK_DEDUCT", 1, 3_000, 6_000),
            ),
            (Service::Stock, row("r", "STOCK_DEDUCT", 1, 10_000, 15_000)),
            (
                Service::Orchestrator,
                row("o", "ORDER_RESERVE", 1, 21_000, 28_000),
            ),
        ];
        sent.extend(extra);
        let handled = HashMap::from([
            ("d".to_owned(), vec![(Service::Stock, 10_000)]),
            ("o".to_owned(), vec![(Service::Order, 36_000)]),
        ]);
        let sagas = HashMap::from([(
            "T1".to_owned(),
            SagaTimes {
                started_us: 3_000,
                deduct_replied_us: Some(21_000),
            },
        )]);
        let decided = HashMap::from([("T1".to_owned(), 45_000), ("T2".to_owned(), 1)]);
        let measured = measure(&sent, &handled, &sagas, &decided);
        assert_eq!(measured.orders, 1, "T2 has no stage on record");
        measured.stages.iter().map(|s| s.mean_ms).collect()
    }

    #[test]
    fn an_order_is_split_at_every_relay_round_and_handler_and_adds_up() {
        // A retried deduct is not the decision's path.
        let retried = (
            Service::Orchestrator,
            row("d2", "STOCK_DEDUCT", 2, 4_000, 5_000),
        );
        let means = one_order(row("c", "ORDER_CREATED", 0, 0, 1_000), Some(retried));
        assert_eq!(means, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 45.0]);
    }

    #[test]
    fn a_relay_round_that_began_before_its_row_was_written_waited_nothing() {
        // The order-svc round's transaction began 500 µs before the row it claimed.
        let means = one_order(row("c", "ORDER_CREATED", 0, 1_000, 500), None);
        assert_eq!(means, [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 44.0]);
    }
}

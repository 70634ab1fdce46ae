//! Where an accepted order's decision spends its time, stage by stage, read from the spawned
//! services' databases and the buyer's own clock (one host, one clock). The decision runs:
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

use super::messages::open;
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

/// One row of a query: a key (an order number or a message id), maybe a message id, and up to
/// two times in µs since the epoch.
struct Row {
    key: String,
    id: Option<String>,
    a: Option<i64>,
    b: Option<i64>,
}

async fn rows(conn: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<Row>> {
    let found = conn
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .with_context(|| format!("read {sql}"))?;
    found
        .into_iter()
        .map(|row| {
            Ok(Row {
                key: row.try_get("", "k")?,
                id: row.try_get("", "id")?,
                a: row.try_get("", "a")?,
                b: row.try_get("", "b")?,
            })
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .context("a row of the stages")
}

fn us(column: &str) -> String {
    format!("(EXTRACT(EPOCH FROM {column}) * 1000000)::int8")
}

/// First-attempt outbox rows with `tag`: order number → (message id, written, round began).
fn outbox_sql(tag: &str) -> String {
    format!(
        "SELECT message_key AS k, message_id::text AS id, {} AS a, {} AS b FROM outbox \
         WHERE tag = '{tag}' AND attempt <= 1",
        us("created_at"),
        us("sent_at")
    )
}

fn inbox_sql() -> String {
    format!(
        "SELECT message_id AS k, NULL::text AS id, {} AS a, NULL::int8 AS b FROM inbox",
        us("handled_at")
    )
}

/// Order number (or message id) → the row.
fn by_key(found: Vec<Row>) -> HashMap<String, Row> {
    found
        .into_iter()
        .map(|row| (row.key.clone(), row))
        .collect()
}

/// The stages of the orders in `decided` (order number → when the buyer saw the decision, µs
/// since the epoch).
pub async fn measure(
    databases: &[(Service, String)],
    decided: &HashMap<String, i64>,
) -> anyhow::Result<DecisionStages> {
    let conn = |service: Service| {
        let url = databases
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.clone());
        async move {
            let url = url.with_context(|| format!("no database of {}", service.binary()))?;
            open(service, &url).await
        }
    };
    let order = conn(Service::Order).await?;
    let created = by_key(rows(&order, &outbox_sql("ORDER_CREATED")).await?);
    let order_inbox = by_key(rows(&order, &inbox_sql()).await?);
    order.close().await?;
    let orchestrator = conn(Service::Orchestrator).await?;
    let sagas = by_key(
        rows(
            &orchestrator,
            &format!(
                "SELECT s.order_no AS k, NULL::text AS id, {} AS a, {} AS b FROM saga s \
                 LEFT JOIN saga_step t ON t.saga_id = s.saga_id \
                   AND t.step = 'STOCK_DEDUCT' AND t.attempt = 1",
                us("s.created_at"),
                us("t.replied_at")
            ),
        )
        .await?,
    );
    let deducts = by_key(rows(&orchestrator, &outbox_sql("STOCK_DEDUCT")).await?);
    let reserves = by_key(rows(&orchestrator, &outbox_sql("ORDER_RESERVE")).await?);
    orchestrator.close().await?;
    let stock = conn(Service::Stock).await?;
    let stock_inbox = by_key(rows(&stock, &inbox_sql()).await?);
    let replies = by_key(rows(&stock, &outbox_sql("STOCK_DEDUCT")).await?);
    stock.close().await?;

    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); NAMES.len()];
    for (order_no, seen) in decided {
        let point = || -> Option<[i64; 10]> {
            let created = created.get(order_no)?;
            let saga = sagas.get(order_no)?;
            let deduct = deducts.get(order_no)?;
            let reply = replies.get(order_no)?;
            let reserve = reserves.get(order_no)?;
            Some([
                created.a?,
                created.b?,
                saga.a?,
                deduct.b?,
                stock_inbox.get(deduct.id.as_deref()?)?.a?,
                reply.b?,
                saga.b?,
                reserve.b?,
                order_inbox.get(reserve.id.as_deref()?)?.a?,
                *seen,
            ])
        };
        let Some(points) = point() else { continue };
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
    Ok(DecisionStages { orders, stages })
}

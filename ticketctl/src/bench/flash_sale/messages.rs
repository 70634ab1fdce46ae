//! What went through the broker, counted in the spawned services' own databases: every message
//! a service sends is first an `outbox` row (keyed by the order number), and every message a
//! service handles leaves an `inbox` row with the same `message_id`. Only the messages of the
//! sale's orders count; the warm-up's are left out.
//!
//! The consume delay of a message is its inbox row's `handled_at` minus its outbox row's
//! `sent_at`, over pairs whose outbox row is in one service's database and whose inbox row is
//! in another's (the same host's clock stamps both). It stands for publish-acknowledged →
//! handled, approximating store → handler. More exactly, both are Postgres's `now()`, the start
//! of the transaction that wrote them: `sent_at` is stamped by the relay's transaction, which
//! takes a batch of rows, publishes it and marks it sent once the broker acknowledged it, and
//! `handled_at` by the handler's transaction, which opens with the inbox row. So the delay runs
//! from just before the publish (it includes the send) to the start of the handler. Only the
//! participants keep an inbox (the orchestrator deduplicates order events and replies in its
//! saga log), so the delays are those of the orchestrator's commands to the participants.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use ticket_platform::db::{self, DatabaseConfig};

use super::spawn::Service;
use super::stages::{self, DecisionStages};
use crate::bench::percentile_ms;

/// The broker figures of a sale.
#[derive(Debug, Serialize)]
pub struct MessageFigures {
    /// Outbox rows of every service keyed by an order of the sale (the warm-up's left out).
    pub outbox_rows: usize,
    /// Outbox rows keyed by the order number of a confirmed order.
    pub outbox_rows_of_paid_orders: usize,
    /// `outbox_rows_of_paid_orders` per confirmed order.
    pub per_paid_saga: f64,
    /// `outbox_rows` per saga of the sale.
    pub per_saga: f64,
    /// Messages both sent from one service's outbox and handled in another's inbox: the
    /// orchestrator's commands to the participants.
    pub consume_delay_samples: usize,
    pub consume_delay_p50_ms: f64,
    pub consume_delay_p99_ms: f64,
    /// Outbox row written (in its transaction) to the relay's round that published it began.
    pub relay_delay_p50_ms: f64,
    pub relay_delay_p99_ms: f64,
    /// The same per service whose outbox it is: (p50, p99) ms.
    pub relay_delay_by_service_ms: BTreeMap<String, (f64, f64)>,
    /// Where the accepted orders' decisions spent their time.
    pub decision_stages: DecisionStages,
}

/// One outbox row: its message id, key, tag and attempt, when it was written and when it was
/// marked sent (µs since the epoch).
pub(super) struct Sent {
    pub message_id: String,
    pub key: String,
    pub tag: String,
    pub attempt: i32,
    pub created_us: i64,
    pub sent_us: Option<i64>,
}

/// Reads every service's outbox and inbox and counts the messages of the sale's orders
/// (`sale`, one saga each); `paid` are the order numbers of its confirmed orders, `decided`
/// when each accepted order's buyer saw the decision (µs since the epoch).
pub async fn count(
    databases: &[(Service, String)],
    sale: &HashSet<String>,
    paid: &HashSet<String>,
    decided: &HashMap<String, i64>,
) -> anyhow::Result<MessageFigures> {
    let mut sent: Vec<(Service, Sent)> = Vec::new();
    // message id -> (the service that handled it, when, µs since the epoch)
    let mut handled: HashMap<String, Vec<(Service, i64)>> = HashMap::new();
    let mut sagas = HashMap::new();
    for (service, url) in databases {
        let conn = open(*service, url).await?;
        if *service == Service::Orchestrator {
            sagas = stages::saga_times(&conn).await?;
        }
        for row in outbox(&conn).await? {
            if sale.contains(&row.key) {
                sent.push((*service, row));
            }
        }
        for (message_id, handled_us) in inbox(&conn).await? {
            handled
                .entry(message_id)
                .or_default()
                .push((*service, handled_us));
        }
        conn.close().await?;
    }
    let outbox_rows = sent.len();
    let of_paid = sent
        .iter()
        .filter(|(_, row)| paid.contains(&row.key))
        .count();
    let mut delays_us: Vec<u64> = sent
        .iter()
        .filter_map(|(from, row)| Some((from, &row.message_id, row.sent_us?)))
        .flat_map(|(from, message_id, sent_us)| {
            handled
                .get(message_id)
                .into_iter()
                .flatten()
                .filter(move |(by, _)| by != from)
                .map(move |(_, handled_us)| {
                    u64::try_from(handled_us.saturating_sub(sent_us)).unwrap_or(0)
                })
        })
        .collect();
    delays_us.sort_unstable();
    let relay = |of: Option<Service>| {
        let mut relay_us: Vec<u64> = sent
            .iter()
            .filter(|(service, _)| of.is_none_or(|s| s == *service))
            .filter_map(|(_, row)| u64::try_from(row.sent_us? - row.created_us).ok())
            .collect();
        relay_us.sort_unstable();
        (
            percentile_ms(&relay_us, 50.0),
            percentile_ms(&relay_us, 99.0),
        )
    };
    let (relay_p50, relay_p99) = relay(None);
    let relay_by_service = databases
        .iter()
        .map(|(service, _)| (service.binary().to_owned(), relay(Some(*service))))
        .collect();
    Ok(MessageFigures {
        outbox_rows,
        outbox_rows_of_paid_orders: of_paid,
        per_paid_saga: of_paid as f64 / paid.len() as f64,
        per_saga: outbox_rows as f64 / sale.len() as f64,
        consume_delay_samples: delays_us.len(),
        consume_delay_p50_ms: percentile_ms(&delays_us, 50.0),
        consume_delay_p99_ms: percentile_ms(&delays_us, 99.0),
        relay_delay_p50_ms: relay_p50,
        relay_delay_p99_ms: relay_p99,
        relay_delay_by_service_ms: relay_by_service,
        decision_stages: stages::measure(&sent, &handled, &sagas, decided),
    })
}

/// One connection to the database of a spawned service.
async fn open(service: Service, url: &str) -> anyhow::Result<DatabaseConnection> {
    db::connect(&DatabaseConfig {
        url: url.to_owned(),
        max_connections: 1,
        migrate_on_start: false,
        acquire_timeout: std::time::Duration::from_secs(10),
    })
    .await
    .with_context(|| format!("connect to the database of {}", service.binary()))
}

async fn outbox(conn: &DatabaseConnection) -> anyhow::Result<Vec<Sent>> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT message_id::text AS message_id, message_key, tag, attempt, \
             (EXTRACT(EPOCH FROM created_at) * 1000000)::int8 AS created_us, \
             (EXTRACT(EPOCH FROM sent_at) * 1000000)::int8 AS sent_us FROM outbox",
        ))
        .await
        .context("read the outbox")?;
    rows.into_iter()
        .map(|row| {
            Ok(Sent {
                message_id: row.try_get("", "message_id")?,
                key: row.try_get("", "message_key")?,
                tag: row.try_get("", "tag")?,
                attempt: row.try_get("", "attempt")?,
                created_us: row.try_get("", "created_us")?,
                sent_us: row.try_get("", "sent_us")?,
            })
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .context("an outbox row")
}

/// Every inbox row: its message id and when it was handled (µs since the epoch).
async fn inbox(conn: &DatabaseConnection) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT message_id, (EXTRACT(EPOCH FROM handled_at) * 1000000)::int8 AS handled_us \
             FROM inbox",
        ))
        .await
        .context("read the inbox")?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("", "message_id")?,
                row.try_get("", "handled_us")?,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .context("an inbox row")
}

//! Produce -> consume round trips through the real broker. Each round has a topic and a
//! consumer group of its own; every message carries its send time, and the consumer records
//! the time it was handed to the handler.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sea_orm::TransactionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use ticket_platform::db::{self, DatabaseConfig};
use ticket_platform::messaging::{
    Consumer, ConsumerSettings, HandleError, IncomingMessage, MessageHandler, MessagingConfig,
    MessagingRuntime, Namespace, OutgoingMessage, Publisher,
};
use ticket_platform::outbox::{self, Relay, RelaySettings};

use super::percentile_ms;

#[derive(clap::Args)]
pub struct Args {
    /// Messages per round.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Concurrent senders of the single-send rounds, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    concurrency: Vec<usize>,
    /// Batch sizes of the batched rounds (4 senders each), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16usize, 64])]
    batch: Vec<usize>,
    /// Messages handed to one listener call.
    #[arg(long, default_value_t = 32)]
    consume_batch: u32,
    #[arg(long, default_value = "127.0.0.1:9876")]
    name_server: String,
    /// Postgres server for the outbox round (a fresh database is created on it).
    #[arg(long, default_value = "postgres://postgres:postgres@127.0.0.1:5432")]
    postgres: String,
}

struct Round {
    name: String,
    messages: usize,
    send_secs: f64,
    total_secs: f64,
    latencies_us: Vec<u64>,
}

impl Round {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |",
            self.name,
            self.messages,
            self.messages as f64 / self.send_secs,
            self.messages as f64 / self.total_secs,
            percentile_ms(&self.latencies_us, 50.0),
            percentile_ms(&self.latencies_us, 99.0),
        )
    }
}

#[derive(Clone, Default)]
struct Stopwatch(Arc<Mutex<Vec<u64>>>);

impl MessageHandler for Stopwatch {
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let sent = message
            .body
            .get(..16)
            .and_then(|b| b.try_into().ok())
            .map(u128::from_le_bytes)
            .ok_or_else(|| HandleError::Reject("no send time in the payload".into()))?;
        let latency = now_us().saturating_sub(sent);
        self.0
            .lock()
            .map_err(|_| HandleError::Retry("poisoned".into()))?
            .push(u64::try_from(latency).unwrap_or(u64::MAX));
        Ok(())
    }
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn message(topic: &str, i: usize) -> OutgoingMessage {
    let mut payload = now_us().to_le_bytes().to_vec();
    payload.resize(128, 0);
    OutgoingMessage {
        topic: topic.to_owned(),
        tag: "BENCH".into(),
        key: format!("ORD-{i}"),
        message_id: uuid::Uuid::now_v7(),
        saga_id: None,
        step: None,
        attempt: 0,
        traceparent: None,
        payload,
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let namespace = Namespace::new(&format!(
        "bench{}_",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ))?;
    let config = MessagingConfig {
        name_server: args.name_server.clone(),
        namespace,
        consume_batch: args.consume_batch,
        ..MessagingConfig::default()
    };
    let runtime = MessagingRuntime::start(config)?;
    let publisher = Arc::new(Publisher::start(Arc::clone(&runtime), "bench-producer").await?);
    println!("| round | messages | sent/s | consumed/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    let mut round_no = 0;
    for &senders in &args.concurrency {
        round_no += 1;
        let round = direct_round(
            &runtime,
            &publisher,
            round_no,
            &format!("single sends, {senders} senders"),
            args.messages,
            senders,
            1,
        )
        .await?;
        println!("{}", round.row());
    }
    for &batch in &args.batch {
        round_no += 1;
        let round = direct_round(
            &runtime,
            &publisher,
            round_no,
            &format!("batches of {batch}, 4 senders"),
            args.messages,
            4,
            batch,
        )
        .await?;
        println!("{}", round.row());
    }
    round_no += 1;
    let round = outbox_round(&runtime, &publisher, round_no, &args).await?;
    println!("{}", round.row());
    publisher.shutdown().await;
    runtime.shutdown().await;
    Ok(())
}

async fn start_consumer(
    runtime: &Arc<MessagingRuntime>,
    topic: &str,
) -> anyhow::Result<(Consumer, Stopwatch)> {
    let stopwatch = Stopwatch::default();
    let settings = ConsumerSettings::new(&format!("{topic}-group")).subscribe(topic, &["*"]);
    let consumer = Consumer::start(Arc::clone(runtime), settings, stopwatch.clone()).await?;
    Ok((consumer, stopwatch))
}

async fn wait_for(
    stopwatch: &Stopwatch,
    n: usize,
    started: Instant,
) -> anyhow::Result<(f64, Vec<u64>)> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = stopwatch
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .len();
        if done >= n {
            let total = started.elapsed().as_secs_f64();
            let mut samples = stopwatch
                .0
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .clone();
            samples.sort_unstable();
            return Ok((total, samples));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} messages consumed within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn direct_round(
    runtime: &Arc<MessagingRuntime>,
    publisher: &Arc<Publisher>,
    round_no: usize,
    name: &str,
    messages: usize,
    senders: usize,
    batch: usize,
) -> anyhow::Result<Round> {
    let topic = format!("BENCH_{round_no}");
    publisher.ensure_topics(&[&topic]).await?;
    let (consumer, stopwatch) = start_consumer(runtime, &topic).await?;
    // Let the consumer take its queues before the clock starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let per_sender = messages / senders;
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let publisher = Arc::clone(publisher);
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while i < per_sender {
                    let n = batch.min(per_sender - i);
                    let chunk: Vec<_> = (i..i + n)
                        .map(|k| message(&topic, s * per_sender + k))
                        .collect();
                    publisher.publish_batch(&chunk).await?;
                    i += n;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("sender")??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let sent = per_sender * senders;
    let (total_secs, latencies_us) = wait_for(&stopwatch, sent, started).await?;
    consumer.shutdown().await;
    Ok(Round {
        name: name.to_owned(),
        messages: sent,
        send_secs,
        total_secs,
        latencies_us,
    })
}

struct BenchMigrator;

impl MigratorTrait for BenchMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        ticket_platform::migration::platform_migrations()
    }
}

/// Writers commit rows (25 per transaction, 8 writers); the relay publishes them.
async fn outbox_round(
    runtime: &Arc<MessagingRuntime>,
    publisher: &Arc<Publisher>,
    round_no: usize,
    args: &Args,
) -> anyhow::Result<Round> {
    let name = format!(
        "bench_outbox_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = format!("{}/{name}", args.postgres);
    db::create_database(&url).await?;
    let conn = db::connect(&DatabaseConfig {
        url: url.clone(),
        max_connections: 20,
        migrate_on_start: true,
        acquire_timeout: std::time::Duration::from_millis(
            ticket_platform::db::DEFAULT_ACQUIRE_TIMEOUT_MS,
        ),
    })
    .await?;
    BenchMigrator::up(&conn, None).await?;
    let topic = format!("BENCH_{round_no}");
    publisher.ensure_topics(&[&topic]).await?;
    let (consumer, stopwatch) = start_consumer(runtime, &topic).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let relay = Relay::spawn(
        conn.clone(),
        Arc::clone(publisher),
        RelaySettings::default(),
    );
    let started = Instant::now();
    let writers = 8;
    let per_writer = args.messages / writers;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let conn = conn.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while i < per_writer {
                    let n = 25.min(per_writer - i);
                    let chunk: Vec<_> = (i..i + n)
                        .map(|k| message(&topic, w * per_writer + k))
                        .collect();
                    let txn = conn.begin().await?;
                    outbox::enqueue(&txn, &chunk).await?;
                    txn.commit().await?;
                    i += n;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("writer")??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let sent = per_writer * writers;
    let (total_secs, latencies_us) = wait_for(&stopwatch, sent, started).await?;
    relay.stop().await;
    consumer.shutdown().await;
    conn.close().await?;
    db::drop_database(&url).await?;
    Ok(Round {
        name: "outbox relay, 8 writers x 25 rows/txn".into(),
        messages: sent,
        send_secs,
        total_secs,
        latencies_us,
    })
}

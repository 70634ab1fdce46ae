//! Prededucts per second through stock-svc (gRPC `StockService.Prededuct`: Lua script in
//! Redis, then the ledger row in Postgres before the answer) and, in the same run, raw
//! `EVALSHA` of the same script straight to Redis. stock-svc runs in this process on a port of
//! its own, with a fresh database and Redis key prefix; every request deducts a distinct order
//! of a tier big enough that none is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fred::interfaces::LuaInterface;
use fred::types::Value;
use stock_svc::gate::{StockGate, TierRef};
use ticket_platform::db::{self, DatabaseConfig};
use ticket_platform::messaging::{MessagingConfig, Namespace};
use ticket_platform::service::ServiceConfig;
use ticket_platform::telemetry::TelemetryConfig;
use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::stock_service_client::StockServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::percentile_ms;
use crate::admin;
use crate::catalog::{Sale, put_on_sale};

#[derive(clap::Args)]
pub struct Args {
    /// Prededucts per round.
    #[arg(long, default_value_t = 50_000)]
    requests: usize,
    /// Requests in flight at once, in both rounds.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC round spreads its requests over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Redis connections, of the service and of the raw round alike.
    #[arg(long, default_value_t = 16)]
    redis_connections: usize,
    /// Group-commit tasks writing the ledger in stock-svc.
    #[arg(long, default_value_t = 4)]
    ledger_writers: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[arg(long, default_value = "127.0.0.1:9876")]
    name_server: String,
    /// Postgres server (a fresh database is created on it).
    #[arg(long, default_value = "postgres://postgres:postgres@127.0.0.1:5432")]
    postgres: String,
}

const TOKEN: &str = "bench-admin-token";

struct Round {
    name: &'static str,
    requests: usize,
    secs: f64,
    latencies_us: Vec<u64>,
}

impl Round {
    fn per_sec(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} |",
            self.name,
            self.requests,
            self.per_sec(),
            percentile_ms(&self.latencies_us, 50.0),
            percentile_ms(&self.latencies_us, 99.0),
        )
    }
}

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let id = suffix();
    let url = format!("{}/bench_stock_{id}", args.postgres);
    db::create_database(&url).await?;
    let measured = measure(args, &id, url.clone()).await;
    let dropped = db::drop_database(&url).await;
    measured?;
    Ok(dropped?)
}

/// Both rounds against a stock-svc on the fresh database at `url`.
async fn measure(args: Args, id: &str, url: String) -> anyhow::Result<()> {
    let key_prefix = format!("bench-stock-{id}");
    let config = stock_svc::Config {
        service: ServiceConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access: ticket_platform::auth::AccessConfig {
                dev: false,
                admin_token: TOKEN.into(),
                service_token: format!("{TOKEN}-service"),
            },
            grpc: ticket_platform::transport::GrpcConfig::default(),
            database: DatabaseConfig {
                url,
                max_connections: 20,
                migrate_on_start: true,
                acquire_timeout: std::time::Duration::from_millis(
                    ticket_platform::db::DEFAULT_ACQUIRE_TIMEOUT_MS,
                ),
            },
            messaging: MessagingConfig {
                name_server: args.name_server.clone(),
                namespace: Namespace::new(&format!("bench{id}_"))?,
                ..MessagingConfig::default()
            },
            telemetry: TelemetryConfig {
                service_name: "stock-svc".into(),
                log: "warn".into(),
                otlp_endpoint: String::new(),
            },
        },
        redis_url: args.redis.clone(),
        redis_connections: args.redis_connections,
        redis_key_prefix: key_prefix.clone(),
        ledger_writers: args.ledger_writers,
        drift_interval: Duration::ZERO,
    };
    let app = stock_svc::Application::build(config)
        .await
        .context("start stock-svc")?;
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let total = i64::try_from(args.requests)?;
    let raw_tier = tier(&channels[0], total).await?;
    let service_tier = tier(&channels[0], total).await?;
    let gate = StockGate::connect(&args.redis, args.redis_connections, &key_prefix).await?;

    println!(
        "{} prededucts per round, {} in flight, {} gRPC connection(s), {} Redis connections, \
         {} ledger writer(s)",
        args.requests,
        args.concurrency,
        args.connections,
        args.redis_connections,
        args.ledger_writers
    );
    println!("| round | calls | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let raw = raw_round(&gate, raw_tier, &args).await?;
    println!("{}", raw.row());
    let service = service_round(&channels, service_tier, &args).await?;
    println!("{}", service.row());
    let floor = floor_round(&channels, &args).await?;
    println!("{}", floor.row());
    println!(
        "\nservice / raw EVALSHA = {:.2}",
        service.per_sec() / raw.per_sec()
    );
    // On cores shared by everything, the CPU of a call that is both a gRPC round trip and the
    // script is about the sum of the two; that bounds the ratio even with no ledger at all.
    let (floor, raw) = (floor.per_sec(), raw.per_sec());
    println!("gRPC floor / raw EVALSHA = {:.2}", floor / raw);
    println!(
        "ceiling of service / raw EVALSHA when a call costs a gRPC round trip plus the script \
         on the same cores: floor / (floor + raw) = {:.2}",
        floor / (floor + raw)
    );

    for tier in [raw_tier, service_tier] {
        gate.forget_session(tier.session_id, &[tier.tier_id])
            .await?;
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// A tier of `total` tickets, one per buyer, on sale now (the only tier of its session).
async fn tier(channel: &Channel, total: i64) -> anyhow::Result<TierRef> {
    let sale = Sale {
        title: "Bench",
        venue: "Loopback",
        tier: format!("Bench {}", suffix()),
        price_cents: 5_000,
        total,
        per_user_limit: 1,
    };
    let on_sale = put_on_sale(channel.clone(), TOKEN, sale).await?;
    Ok(TierRef {
        session_id: on_sale.session_id,
        tier_id: on_sale.tier_id,
    })
}

/// The same number of gRPC calls that do nothing (the health check) on the same connections:
/// what the gRPC client and server alone cost, the ceiling of any gRPC round here.
async fn floor_round(channels: &[Channel], args: &Args) -> anyhow::Result<Round> {
    let clients: Vec<HealthClient<Channel>> = channels
        .iter()
        .map(|c| HealthClient::new(c.clone()))
        .collect();
    let round = drive(args.requests, args.concurrency, move |i| {
        let mut client = clients[i % clients.len()].clone();
        async move {
            let answer = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner();
            if answer.status() != ServingStatus::Serving {
                bail!("health check {i} answered {:?}", answer.status());
            }
            Ok(())
        }
    })
    .await?;
    Ok(Round {
        name: "gRPC floor: Health/Check (no work)",
        ..round
    })
}

/// Runs `requests` calls of `call(i)` with `concurrency` in flight; collects latencies.
async fn drive<F, Fut>(requests: usize, concurrency: usize, call: F) -> anyhow::Result<Round>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let call = Arc::clone(&call);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests {
                        return anyhow::Ok(latencies);
                    }
                    let sent = Instant::now();
                    call(i).await?;
                    latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            })
        })
        .collect();
    let mut latencies_us = Vec::with_capacity(requests);
    for worker in workers {
        latencies_us.extend(worker.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Ok(Round {
        name: "",
        requests,
        secs,
        latencies_us,
    })
}

async fn raw_round(gate: &StockGate, tier: TierRef, args: &Args) -> anyhow::Result<Round> {
    let sha = gate.prededuct_sha().await;
    let keys = gate.fence_keys(tier);
    let pool = gate.pool().clone();
    let round = drive(args.requests, args.concurrency, move |i| {
        let pool = pool.clone();
        let sha = sha.clone();
        let keys = keys.clone();
        async move {
            let args: Vec<Value> = vec![
                format!("RAW-{i}").into(),
                format!("u{i}").into(),
                1i64.into(),
            ];
            let reply: Vec<Value> = pool.next().evalsha(sha, keys, args).await?;
            match reply.first().and_then(Value::as_string).as_deref() {
                Some("DEDUCTED") => Ok(()),
                other => bail!("raw prededuct {i} answered {other:?}"),
            }
        }
    })
    .await?;
    Ok(Round {
        name: "raw EVALSHA (Redis only)",
        ..round
    })
}

async fn service_round(channels: &[Channel], tier: TierRef, args: &Args) -> anyhow::Result<Round> {
    let clients: Vec<StockServiceClient<Channel>> = channels
        .iter()
        .map(|c| StockServiceClient::new(c.clone()))
        .collect();
    let round = drive(args.requests, args.concurrency, move |i| {
        let mut client = clients[i % clients.len()].clone();
        async move {
            let request = admin(
                pb::PredeductRequest {
                    order_no: format!("SVC-{i}"),
                    tier_id: tier.tier_id,
                    user_id: format!("u{i}"),
                    quantity: 1,
                },
                TOKEN,
            )?;
            let answer = client.prededuct(request).await?.into_inner();
            if answer.outcome() != pb::PredeductOutcome::Deducted {
                bail!("prededuct {i} answered {:?}", answer.outcome());
            }
            Ok(())
        }
    })
    .await?;
    Ok(Round {
        name: "stock-svc Prededuct (gRPC + Redis + ledger)",
        ..round
    })
}

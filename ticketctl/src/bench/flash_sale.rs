//! `ticketctl bench flash-sale`: a flash sale measured from the buyers' side, against running
//! services or, with `--spawn`, against services this run starts for itself. A tier of N
//! tickets goes on sale; one warm-up order goes through the whole saga before the clock
//! starts; then M buyers, C at a time, each order one ticket, follow their order with
//! `WatchOrder` until the saga decided it, then pay, cancel or let the deadline pass. Once every
//! order and saga is final it reports throughput and latencies, what went through the broker
//! and what the services used (those two only with `--spawn`), and checks that the sale sold
//! correctly: any failed check makes the command fail.

mod checks;
mod crowd;
mod figures;
mod messages;
mod report;
mod spawn;
mod stages;
mod usage;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;

use self::crowd::{Arrivals, Crowd, warm_up};
pub use self::report::Report;
use self::spawn::{Service, Settings, System};
use crate::buyers::{self, Plans, connect};
use crate::catalog::{Sale, put_on_sale, stock_at_end};

#[derive(Clone, clap::Args)]
pub struct Args {
    /// order-svc's gRPC address (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    order: String,
    /// stock-svc's gRPC address (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    stock: String,
    /// The orchestrator's gRPC address (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:50053")]
    orchestrator: String,
    /// The admin token (`TICKET_ADMIN_TOKEN`; with --spawn, tokens of the run's own).
    #[arg(
        long,
        env = "TICKET_ADMIN_TOKEN",
        default_value = "dev-admin-token",
        hide_env_values = true
    )]
    token: String,
    /// The buyers' and the payments' credentials (with --spawn, the run's own).
    #[command(flatten)]
    keys: buyers::Keys,
    /// Tickets on sale.
    #[arg(long, default_value_t = 1_000)]
    tickets: i64,
    /// Buyers, one ticket each.
    #[arg(long, default_value_t = 20_000)]
    buyers: usize,
    /// Buyers at once: a closed loop, the next buyer comes when one is done.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Buyers arriving per second instead, whatever the others are doing (an open loop, as a
    /// sale's crowd comes); CreateOrder is then timed from each buyer's arrival.
    #[arg(long, value_parser = arrival_rate)]
    rate: Option<f64>,
    /// HTTP/2 connections to order-svc the buyers are spread over (buyers of a real sale come
    /// on connections of their own; one connection carries every frame through one task at
    /// each end).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Percent of reserved buyers who pay.
    #[arg(long, default_value_t = 60)]
    pay: usize,
    /// Percent of reserved buyers who cancel (the rest let the deadline pass).
    #[arg(long, default_value_t = 20)]
    cancel: usize,
    /// The sagas' payment window (with --spawn; running services keep theirs).
    #[arg(long, default_value_t = 20)]
    payment_window_secs: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// How long a buyer waits for the decision, and how long to wait, past the last payment
    /// deadline, for every order and saga to be final.
    #[arg(long, default_value_t = 300)]
    wait_secs: u64,
    /// Start the four services (the binaries beside this one) on fresh databases, a fresh
    /// RocketMQ namespace and Redis keys of their own, and stop them at the end.
    #[arg(long)]
    pub spawn: bool,
    /// Postgres server of the spawned services.
    #[arg(long, default_value = "postgres://postgres:postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// RocketMQ name server of the spawned services.
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub name_server: String,
    /// Redis of the spawned services.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// The synchronous chain the design replaces: the spawned orchestrator drives every saga
    /// over gRPC (`transport = grpc`) and each buyer's CreateOrder answers only with the
    /// decision (`wait_for_decision`).
    #[arg(long)]
    pub synchronous: bool,
    /// With --spawn: the services run the `dev` profile without limits and the buyers present
    /// no token, so that what identity and the limits cost can be measured against a run
    /// without this switch.
    #[arg(long)]
    pub open_access: bool,
    /// Keep the spawned services' logs even when every check passed (they are kept when one
    /// fails); `RUST_LOG=info,ticket_platform::outbox=debug` logs every relay round's timings.
    #[arg(long)]
    pub keep_logs: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let report = sale(&args).await?;
    let failed = report.checks.iter().filter(|c| !c.passed).count();
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// The sale `args` describe, its report printed (and written as JSON with `--json`); the
/// spawned services stopped and their databases dropped whatever happened.
pub async fn sale(args: &Args) -> anyhow::Result<Report> {
    let plans = Plans::new(args.pay, args.cancel)?;
    let mut args = args.clone();
    let args = &mut args;
    let mut system = if args.spawn {
        // The spawned services run the production profile, with credentials of this run (or,
        // with --open-access, the dev profile and its default admin token).
        let fresh = || uuid::Uuid::new_v4().simple().to_string();
        if args.open_access {
            args.token = ticket_platform::auth::DEV_ADMIN_TOKEN.to_owned();
            args.keys.anonymous = true;
        } else {
            args.token = fresh();
            args.keys = buyers::Keys {
                buyer_secret: format!("{}{}", fresh(), fresh()),
                payment_token: fresh(),
                anonymous: false,
            };
        }
        let settings = Settings {
            postgres: &args.postgres,
            name_server: &args.name_server,
            redis: &args.redis,
            admin_token: &args.token,
            service_token: &fresh(),
            keys: &args.keys,
            payment_window: Duration::from_secs(args.payment_window_secs),
            transport: if args.synchronous { "grpc" } else { "rocketmq" },
            open_access: args.open_access,
        };
        let system = System::start(&settings).await?;
        println!("spawned the services: {}", describe(&system));
        println!(
            "{}",
            if args.open_access {
                spawn::OPEN_ACCESS_STATED
            } else {
                spawn::LIMITS_STATED
            }
        );
        Some(system)
    } else {
        None
    };
    // Ctrl-C ends the sale, and still stops the services and drops their databases.
    let args = &*args;
    let measured = tokio::select! {
        measured = measure(args, plans, system.as_ref()) => measured,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let written = match &measured {
        Ok(report) => {
            report.print();
            match &args.json {
                Some(path) => write_json(report, path),
                None => Ok(()),
            }
        }
        Err(_) => Ok(()),
    };
    if let (Some(system), Ok(report)) = (system.as_mut(), &measured)
        && report.all_passed
        && !args.keep_logs
    {
        system.forget_logs();
    }
    // Stops the services and drops their databases.
    drop(system);
    let report = measured?;
    written?;
    Ok(report)
}

/// `--rate`: a number of buyers per second above zero.
fn arrival_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a number of buyers per second above 0"
        )),
    }
}

fn describe(system: &System) -> String {
    Service::ALL
        .iter()
        .map(|s| format!("{} {}", s.binary(), system.url(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn write_json(report: &impl serde::Serialize, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The sale, the wait until everything is final, and the report.
async fn measure(args: &Args, plans: Plans, system: Option<&System>) -> anyhow::Result<Report> {
    let (order_addr, stock_addr, orchestrator_addr) = match system {
        Some(system) => (
            system.url(Service::Order),
            system.url(Service::Stock),
            system.url(Service::Orchestrator),
        ),
        None => (
            args.order.clone(),
            args.stock.clone(),
            args.orchestrator.clone(),
        ),
    };
    let orders = OrderServiceClient::new(connect(&order_addr).await?);
    let stock_channel = connect(&stock_addr).await?;
    let mut sagas = SagaAdminClient::new(crate::traced("orchestrator", &orchestrator_addr).await?);
    let sale = Sale {
        title: "Flash Sale Bench",
        venue: "Loopback Arena",
        tier: "Floor".into(),
        price_cents: 7_500,
        total: args.tickets,
        per_user_limit: 4,
    };
    let on_sale = put_on_sale(stock_channel.clone(), &args.token, sale).await?;
    let warming = warm_up(
        &orders,
        &stock_channel,
        &args.token,
        &args.keys,
        args.wait_secs,
    )
    .await?;
    println!("warmed up: one order paid and confirmed in {warming:.1?}");
    let idle = system.map(System::usage);

    let mut lanes = vec![orders.clone()];
    for _ in 1..args.connections {
        lanes.push(OrderServiceClient::new(connect(&order_addr).await?));
    }
    let crowd = Crowd::new(
        lanes,
        on_sale.tier_id,
        plans,
        Duration::from_secs(args.wait_secs),
        args.synchronous,
        &args.keys,
    )?;
    let arrivals = match args.rate {
        Some(rate) => Arrivals::PerSecond(rate),
        None => Arrivals::AtOnce(args.concurrency),
    };
    let buyers = crowd.buy(args.buyers, arrivals).await?;

    // Orders whose buyers let the deadline pass end after it.
    if let Some(last) = buyers
        .iter()
        .filter_map(|b| b.order.as_ref())
        .filter(|o| o.status() == pb::OrderStatus::AwaitingPayment)
        .filter_map(|o| {
            o.expire_at
                .as_ref()
                .and_then(ticket_platform::time::instant)
        })
        .max()
        && let Ok(wait) = (last - chrono::Utc::now()).to_std()
    {
        println!(
            "waiting {:.0} s for the last payment deadline",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
    let within = Duration::from_secs(args.wait_secs);
    let order_nos: Vec<String> = buyers
        .iter()
        .filter_map(|b| Some(b.order.as_ref()?.order_no.clone()))
        .collect();
    let admin = buyers::Bearer::new(&args.token)?;
    let finals =
        buyers::wait_until_final(&orders, order_nos.clone(), args.concurrency, within, &admin)
            .await?;
    let saga_states =
        crate::saga::wait_until_settled(&mut sagas, &args.token, &order_nos, within).await?;
    let stock = stock_at_end(stock_channel, on_sale.tier_id, &args.token).await?;
    let resources = match (system, idle) {
        (Some(system), Some(idle)) => Some(figures::resources(&idle, &system.usage())),
        _ => None,
    };
    let paid: HashSet<String> = finals
        .iter()
        .filter(|o| o.status() == pb::OrderStatus::Confirmed)
        .map(|o| o.order_no.clone())
        .collect();
    let messages = match system {
        Some(system) => {
            let sale: HashSet<String> = order_nos.iter().cloned().collect();
            let decided: HashMap<String, i64> = buyers
                .iter()
                .filter_map(|b| Some((b.order.as_ref()?.order_no.clone(), b.decided_wall_us?)))
                .collect();
            Some(messages::count(system.databases(), &sale, &paid, &decided).await?)
        }
        None => None,
    };

    let checks = checks::checks(
        args.tickets,
        &order_nos,
        &finals,
        &saga_states,
        &stock,
        &buyers,
    );
    Ok(figures::report(
        args,
        &buyers,
        &finals,
        &saga_states,
        messages,
        resources,
        checks,
    ))
}

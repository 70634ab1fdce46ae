//! `ticketctl bench compare`: one sale, in one invocation, as the two designs the plan weighs.
//!
//! - **asynchronous** (this system): CreateOrder answers as soon as the order is admitted and
//!   saved; the buyer learns the saga's decision through WatchOrder; the saga runs over
//!   RocketMQ.
//! - **synchronous chain** (what it replaces): the orchestrator drives every saga over gRPC
//!   (`transport = grpc`) and each CreateOrder answers only with the decision
//!   (`wait_for_decision`).
//!
//! Each runs on services of its own (`--spawn`, fresh databases), one after the other. Then
//! the two ceilings below them: the broker's (`bench mq`, batched sends) and Redis' (`bench
//! stock`, the prededuct script through stock-svc and raw), so a reader sees how far each
//! design is from what its parts can do.

use clap::Parser;
use serde::Serialize;

use super::flash_sale::{self, Report};
use super::{mq, stock};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The sale both designs run (`--spawn` is implied; `--json` gets both reports).
    #[command(flatten)]
    sale: flash_sale::Args,
    /// Messages per round of the broker's ceiling (`bench mq`, batched).
    #[arg(long, default_value_t = 20_000)]
    mq_messages: usize,
    /// Prededucts per round of Redis' ceiling (`bench stock`).
    #[arg(long, default_value_t = 20_000)]
    stock_requests: usize,
    /// Skip the two ceilings (the sales only).
    #[arg(long)]
    no_ceilings: bool,
}

#[derive(Serialize)]
struct Comparison<'a> {
    asynchronous: &'a Report,
    synchronous: &'a Report,
    /// Synchronous over asynchronous: how many times longer the synchronous buyer waits.
    create_order_p99_ratio: f64,
    create_order_p50_ratio: f64,
    /// Asynchronous over synchronous: how many times more buyers per second.
    attempts_per_sec_ratio: f64,
}

pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    let mut sale = args.sale.clone();
    sale.spawn = true;
    sale.json = None;
    println!("== the asynchronous design: saga over RocketMQ, CreateOrder answers on admission");
    let asynchronous = flash_sale::sale(&sale).await?;
    println!("\n== the synchronous chain: saga over gRPC, CreateOrder answers with the decision");
    sale.synchronous = true;
    let synchronous = flash_sale::sale(&sale).await?;

    let comparison = Comparison {
        create_order_p99_ratio: synchronous.create_order_ms.p99 / asynchronous.create_order_ms.p99,
        create_order_p50_ratio: synchronous.create_order_ms.p50 / asynchronous.create_order_ms.p50,
        attempts_per_sec_ratio: asynchronous.attempts_per_sec / synchronous.attempts_per_sec,
        asynchronous: &asynchronous,
        synchronous: &synchronous,
    };
    print(&comparison);
    if let Some(path) = &args.sale.json {
        flash_sale::write_json(&comparison, path)?;
    }
    if !args.no_ceilings {
        println!("\n== the broker's ceiling (bench mq, batched)");
        let mq = Ceiling::<mq::Args>::parse_from([
            "mq".to_owned(),
            format!("--messages={}", args.mq_messages),
            "--concurrency=4".to_owned(),
            "--batch=64".to_owned(),
            format!("--name-server={}", args.sale.name_server),
            format!("--postgres={}", args.sale.postgres),
        ]);
        mq::run(mq.args).await?;
        println!(
            "\n== Redis' ceiling (bench stock: the prededuct script through stock-svc and raw)"
        );
        let stock = Ceiling::<stock::Args>::parse_from([
            "stock".to_owned(),
            format!("--requests={}", args.stock_requests),
            format!("--postgres={}", args.sale.postgres),
            format!("--redis={}", args.sale.redis),
        ]);
        stock::run(stock.args).await?;
    }
    let failed = [&asynchronous, &synchronous]
        .iter()
        .flat_map(|r| r.checks.iter())
        .filter(|c| !c.passed)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// A ceiling bench's arguments, parsed as its own command line would be.
#[derive(Parser)]
struct Ceiling<A: clap::Args> {
    #[command(flatten)]
    args: A,
}

fn print(c: &Comparison<'_>) {
    let (a, s) = (c.asynchronous, c.synchronous);
    println!("\n| figure | asynchronous | synchronous chain | ratio |\n|---|---|---|---|");
    let ms = |v: f64| format!("{v:.1}");
    println!(
        "| buyer hears something (CreateOrder) p50 ms | {} | {} | {:.1}x |",
        ms(a.create_order_ms.p50),
        ms(s.create_order_ms.p50),
        c.create_order_p50_ratio
    );
    println!(
        "| buyer hears something (CreateOrder) p99 ms | {} | {} | {:.1}x |",
        ms(a.create_order_ms.p99),
        ms(s.create_order_ms.p99),
        c.create_order_p99_ratio
    );
    println!(
        "| sent → decision known p50 ms | {} | {} | |",
        ms(a.send_to_decision_ms.p50),
        ms(s.send_to_decision_ms.p50)
    );
    println!(
        "| sent → decision known p99 ms | {} | {} | |",
        ms(a.send_to_decision_ms.p99),
        ms(s.send_to_decision_ms.p99)
    );
    println!(
        "| attempts per second | {:.0} | {:.0} | {:.1}x |",
        a.attempts_per_sec, s.attempts_per_sec, c.attempts_per_sec_ratio
    );
    println!(
        "| completed sagas per second | {:.1} | {:.1} | |",
        a.completed_sagas_per_sec, s.completed_sagas_per_sec
    );
    println!(
        "| accepted then sold out | {} | {} | |",
        a.over_acceptance.orders, s.over_acceptance.orders
    );
}

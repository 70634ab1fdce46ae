//! `ticketctl demo`: a short flash sale against the running services. A show with a few
//! hundred tickets goes on sale; a few thousand buyers order at once; of those who get a
//! reservation some pay, some cancel and the rest let the payment deadline pass. Then it waits
//! until every order is final and prints what happened, with the stock as Redis and the ledger
//! see it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use ticket_proto::stock::v1 as stock_pb;
use ticket_proto::stock::v1::stock_service_client::StockServiceClient;
use tonic::transport::Channel;

use crate::catalog::{Sale, put_on_sale};

use crate::bench::percentile_ms;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    order: String,
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    stock: String,
    /// Tickets on sale.
    #[arg(long, default_value_t = 300)]
    tickets: i64,
    /// Buyers ordering at once.
    #[arg(long, default_value_t = 3_000)]
    buyers: usize,
    /// Percent of reserved buyers who pay.
    #[arg(long, default_value_t = 60)]
    pay: usize,
    /// Percent of reserved buyers who cancel (the rest let the deadline pass).
    #[arg(long, default_value_t = 20)]
    cancel: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// How long to wait for every order to be final.
    #[arg(long, default_value_t = 300)]
    wait_secs: u64,
    /// The admin token (`TICKET_ADMIN_TOKEN`).
    #[arg(
        long,
        env = "TICKET_ADMIN_TOKEN",
        default_value = "dev-admin-token",
        hide_env_values = true
    )]
    token: String,
}

async fn connect(addr: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(addr.to_owned())?
        .connect()
        .await
        .with_context(|| format!("cannot reach {addr}; is `scripts/run.sh` running?"))
}

/// What a buyer does once reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Pay,
    Cancel,
    LetExpire,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.pay + args.cancel > 100 {
        bail!("--pay and --cancel add up to more than 100 percent");
    }
    let orders = OrderServiceClient::new(connect(&args.order).await?);
    let stock_channel = connect(&args.stock).await?;
    let mut stock = StockServiceClient::new(stock_channel.clone());
    let token = args.token.as_str();
    let sale = put_on_sale(
        stock_channel,
        token,
        Sale {
            title: "Demo Night",
            venue: "Loopback Arena",
            tier: "Floor".into(),
            price_cents: 7_500,
            total: args.tickets,
            per_user_limit: 4,
        },
    )
    .await?;
    println!(
        "on sale: show {} \"Demo Night\", tier {} with {} tickets at 75.00, {} buyers",
        sale.show_id, sale.tier_id, args.tickets, args.buyers
    );

    // Everyone orders at once.
    let started = Instant::now();
    let results: Vec<(usize, Duration, Result<order_pb::Order, tonic::Status>)> =
        futures::stream::iter(0..args.buyers)
            .map(|i| {
                let mut orders = orders.clone();
                let tier_id = sale.tier_id;
                async move {
                    let sent = Instant::now();
                    let result = orders
                        .create_order(order_pb::CreateOrderRequest {
                            user_id: format!("buyer-{i}"),
                            tier_id,
                            quantity: if i % 4 == 0 { 2 } else { 1 },
                            request_id: format!("demo-{}-{i}", tier_id),
                        })
                        .await
                        .map(tonic::Response::into_inner);
                    (i, sent.elapsed(), result)
                }
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
    let ordering = started.elapsed();
    let mut latencies: Vec<u64> = results
        .iter()
        .map(|(_, d, _)| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .collect();
    latencies.sort_unstable();
    let mut created = Vec::new();
    let mut refused_at_once = 0;
    for (i, _, result) in results {
        match result {
            Ok(order) => created.push((i, order)),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => refused_at_once += 1,
            Err(status) => bail!("buyer {i}: {}", status.message()),
        }
    }
    println!(
        "{} orders accepted in {:.2} s (CreateOrder p50 {:.1} ms, p99 {:.1} ms); {} refused at once: sold out",
        created.len(),
        ordering.as_secs_f64(),
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        refused_at_once
    );

    // Each buyer acts once the saga has answered: pay, cancel or let the deadline pass.
    let plan_of = |i: usize| match i % 100 {
        n if n < args.pay => Plan::Pay,
        n if n < args.pay + args.cancel => Plan::Cancel,
        _ => Plan::LetExpire,
    };
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let acted: Vec<anyhow::Result<Option<Plan>>> = futures::stream::iter(created.iter())
        .map(|(i, order)| {
            let mut orders = orders.clone();
            let plan = plan_of(*i);
            async move {
                let settled = loop {
                    let now = orders
                        .get_order(order_pb::GetOrderRequest {
                            order_no: order.order_no.clone(),
                        })
                        .await?
                        .into_inner();
                    match now.status() {
                        order_pb::OrderStatus::AwaitingPayment
                        | order_pb::OrderStatus::Cancelled => break now,
                        _ if Instant::now() > deadline => {
                            bail!("order {} never settled", order.order_no)
                        }
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                if settled.status() != order_pb::OrderStatus::AwaitingPayment {
                    return Ok(None);
                }
                match plan {
                    Plan::Pay => {
                        orders
                            .pay_order(order_pb::PayOrderRequest {
                                order_no: settled.order_no.clone(),
                                payment_ref: format!("demo-pay-{}", settled.order_no),
                                amount_cents: settled.total_cents,
                            })
                            .await?;
                    }
                    Plan::Cancel => {
                        orders
                            .cancel_order(order_pb::CancelOrderRequest {
                                order_no: settled.order_no.clone(),
                                reason: "changed my mind".into(),
                            })
                            .await?;
                    }
                    Plan::LetExpire => {}
                }
                Ok(Some(plan))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let mut plans: BTreeMap<String, usize> = BTreeMap::new();
    for result in acted {
        if let Some(plan) = result? {
            *plans.entry(format!("{plan:?}")).or_default() += 1;
        }
    }
    println!("reserved buyers: {plans:?}; waiting for every order to be final");

    // Every order ends confirmed or cancelled.
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    let mut tickets_sold = 0;
    for (_, order) in &created {
        let mut orders = orders.clone();
        let now = loop {
            let now = orders
                .get_order(order_pb::GetOrderRequest {
                    order_no: order.order_no.clone(),
                })
                .await?
                .into_inner();
            match now.status() {
                order_pb::OrderStatus::Confirmed | order_pb::OrderStatus::Cancelled => break now,
                _ if Instant::now() > deadline => {
                    bail!("order {} is still {:?}", order.order_no, now.status())
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let key = match now.status() {
            order_pb::OrderStatus::Confirmed => {
                tickets_sold += i64::from(now.quantity);
                "CONFIRMED".to_owned()
            }
            _ => format!(
                "CANCELLED {}",
                now.cancel_reason()
                    .as_str_name()
                    .trim_start_matches("CANCEL_REASON_")
            ),
        };
        *finals.entry(key).or_default() += 1;
    }
    println!(
        "after {:.1} s every order is final:",
        started.elapsed().as_secs_f64()
    );
    for (what, count) in &finals {
        println!("  {what:<28} {count}");
    }
    let counters = stock
        .get_stock(stock_pb::GetStockRequest {
            tier_id: sale.tier_id,
        })
        .await?
        .into_inner();
    let report = stock
        .reconcile(stock_pb::ReconcileRequest {
            tier_id: sale.tier_id,
            repair: false,
        })
        .await?
        .into_inner();
    println!(
        "stock: {} sold (confirmed), {} held, {} available of {}; tickets in confirmed orders: {}",
        counters.confirmed, counters.deducted, counters.available, counters.total, tickets_sold
    );
    println!("ledger: {}", report.report);
    if counters.confirmed != tickets_sold || report.drift || counters.deducted != 0 {
        bail!("the stock does not match the orders");
    }
    Ok(())
}

//! `ticketctl demo`: a short flash sale against the running services. A show with a few
//! hundred tickets goes on sale; a few thousand buyers order at once; of those who get a
//! reservation some pay, some cancel and the rest let the payment deadline pass. Then it waits
//! until every order is final and prints what happened, with the stock as Redis and the ledger
//! see it, and where the sale shows in the services' metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;

use crate::bench::percentile_ms;
use crate::buyers::{self, Plans, connect};
use crate::catalog::{Sale, put_on_sale, stock_at_end};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    order: String,
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    stock: String,
    #[arg(long, default_value = "http://127.0.0.1:50053")]
    orchestrator: String,
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
    #[command(flatten)]
    keys: buyers::Keys,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let plans = Plans::new(args.pay, args.cancel)?;
    let orders = OrderServiceClient::new(connect(&args.order).await?);
    let stock_channel = connect(&args.stock).await?;
    let token = args.token.as_str();
    let admin = buyers::Bearer::new(token)?;
    let payment = args.keys.payment()?;
    let sale = put_on_sale(
        stock_channel.clone(),
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
    println!(
        "access: each buyer presents a token of their own (signed with --buyer-secret), \
         payments the payment token; the services' own profile and limits apply \
         (scripts/run.sh: dev, 5 orders a second per buyer)"
    );

    // Everyone orders at once.
    let started = Instant::now();
    let results: Vec<(usize, Duration, Result<order_pb::Order, tonic::Status>)> =
        futures::stream::iter(0..args.buyers)
            .map(|i| {
                let mut orders = orders.clone();
                let tier_id = sale.tier_id;
                let user_id = format!("buyer-{i}");
                let buyer = args.keys.buyer(&user_id);
                async move {
                    let sent = Instant::now();
                    let result = match buyer {
                        Ok(buyer) => orders
                            .create_order(buyer.on(order_pb::CreateOrderRequest {
                                user_id,
                                tier_id,
                                quantity: if i % 4 == 0 { 2 } else { 1 },
                                request_id: format!("demo-{}-{i}", tier_id),
                                wait_for_decision: false,
                                contact: None,
                            }))
                            .await
                            .map(tonic::Response::into_inner),
                        Err(err) => Err(tonic::Status::internal(format!("{err:#}"))),
                    };
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
            Ok(order) => created.push(order),
            // Sold out; a limit's refusal (with a retry delay) is not one.
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tonic_types::StatusExt::get_details_retry_info(&status).is_none() =>
            {
                refused_at_once += 1
            }
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
    let within = Duration::from_secs(args.wait_secs);
    let acted: Vec<anyhow::Result<Option<buyers::Plan>>> = futures::stream::iter(created.iter())
        .map(|order| {
            let mut orders = orders.clone();
            let (plans, payment) = (&plans, &payment);
            let buyer = args.keys.buyer(&order.user_id);
            async move {
                let buyer = buyer?;
                let decided = buyers::watch_until(
                    &mut orders,
                    &order.order_no,
                    buyers::is_decided,
                    within,
                    &buyer,
                )
                .await?;
                if decided.status() != order_pb::OrderStatus::AwaitingPayment {
                    return Ok(None);
                }
                let plan = plans.next();
                buyers::act(&mut orders, plan, decided, &buyer, payment).await?;
                Ok(Some(plan))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    for result in acted {
        if let Some(plan) = result? {
            *chosen.entry(format!("{plan:?}")).or_default() += 1;
        }
    }
    println!("reserved buyers: {chosen:?}; waiting for every order to be final");

    // Every order ends confirmed or cancelled, and every saga with it: a cancelled order's
    // tickets go back after the cancel, in the saga's last step.
    let order_nos: Vec<String> = created.iter().map(|o| o.order_no.clone()).collect();
    let finals =
        buyers::wait_until_final(&orders, order_nos.clone(), args.concurrency, within, &admin)
            .await?;
    let mut sagas = SagaAdminClient::new(crate::traced("orchestrator", &args.orchestrator).await?);
    let settled = crate::saga::wait_until_settled(&mut sagas, token, &order_nos, within).await?;
    let moving: Vec<&String> = order_nos
        .iter()
        .filter(|o| {
            !settled
                .get(*o)
                .is_some_and(|s| s == "COMPLETED" || s == "COMPENSATED")
        })
        .collect();
    if !moving.is_empty() {
        bail!(
            "{} saga(s) not completed or compensated within {within:?}, e.g. {}",
            moving.len(),
            moving[0]
        );
    }
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut tickets_sold = 0;
    for order in &finals {
        if order.status() == order_pb::OrderStatus::Confirmed {
            tickets_sold += i64::from(order.quantity);
        }
        *tally.entry(buyers::ending(order)).or_default() += 1;
    }
    println!(
        "after {:.1} s every order and saga is final:",
        started.elapsed().as_secs_f64()
    );
    for (what, count) in &tally {
        println!("  {what:<28} {count}");
    }
    let end = stock_at_end(stock_channel, sale.tier_id, token).await?;
    let (counters, report) = (end.stock, end.reconcile);
    println!(
        "stock: {} sold (confirmed), {} held, {} available of {}; tickets in confirmed orders: {}",
        counters.confirmed, counters.deducted, counters.available, counters.total, tickets_sold
    );
    println!("ledger: {}", report.report);
    crate::metrics::print_where_to_look().await;
    if counters.confirmed != tickets_sold || report.drift || counters.deducted != 0 {
        bail!("the stock does not match the orders");
    }
    Ok(())
}

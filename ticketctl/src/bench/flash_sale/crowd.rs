//! The buyers of a flash sale: each orders one ticket, follows the order until the saga has
//! decided it, then pays, cancels or lets the deadline pass, and records when each happened.
//! And the warm-up buyer, who goes first, before the clock starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use tonic::transport::Channel;

use crate::buyers::{self, Bearer, Keys, Plan, Plans};
use crate::catalog::{Sale, put_on_sale};

/// How buyers come to the sale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrivals {
    /// A closed loop: `n` buyers at once, the next coming only when one is done (paid and
    /// confirmed, cancelled, or decided not to pay), so the loop slows with the saga.
    AtOnce(usize),
    /// An open loop: buyers arrive at this many per second whatever the others are doing, as
    /// a sale's crowd does; a buyer's CreateOrder is timed from its arrival, so time spent
    /// waiting for the bench itself counts against the system, not for it.
    PerSecond(f64),
}

/// One buyer's sale.
#[derive(Default)]
pub struct Buyer {
    /// CreateOrder, from the buyer's arrival (sent, in a closed loop) to answered.
    pub create_us: u64,
    pub refused_at_once: bool,
    /// The order as last seen, once CreateOrder accepted it.
    pub order: Option<pb::Order>,
    /// When the saga's decision was seen (or the refusal), since the sale started.
    pub decided_at: Option<Duration>,
    /// CreateOrder answered to the decision seen.
    pub decision_us: Option<u64>,
    /// When the saga's decision was seen, µs since the epoch (to set beside the services'
    /// own times).
    pub decided_wall_us: Option<i64>,
    /// When PayOrder answered, and when CONFIRMED was seen, since the sale started.
    pub paid_at: Option<Duration>,
    pub confirmed_at: Option<Duration>,
    /// What went wrong, when a call had an answer a sale does not expect.
    pub failure: Option<String>,
}

/// What every buyer of the crowd shares.
#[derive(Clone)]
pub struct Crowd {
    /// Clients on connections of their own; buyer `i` uses `i % len`.
    orders: Arc<[OrderServiceClient<Channel>]>,
    tier_id: i64,
    plans: Arc<Plans>,
    started: Instant,
    within: Duration,
    /// The synchronous chain: CreateOrder answers with the decision.
    wait_for_decision: bool,
    /// Each buyer's token is signed with these; payments present the payment token.
    keys: Arc<Keys>,
    payment: Bearer,
    progress: ProgressBar,
}

pub fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

impl Crowd {
    /// Buyers of `tier_id`, spread over the connections of `orders`; each waits at most
    /// `within` for each change of its order. With `wait_for_decision`, CreateOrder itself
    /// answers with the saga's decision.
    pub fn new(
        orders: Vec<OrderServiceClient<Channel>>,
        tier_id: i64,
        plans: Plans,
        within: Duration,
        wait_for_decision: bool,
        keys: &Keys,
    ) -> anyhow::Result<Self> {
        assert!(!orders.is_empty(), "a crowd needs a connection");
        Ok(Self {
            payment: keys.payment()?,
            keys: Arc::new(keys.clone()),
            orders: orders.into(),
            tier_id,
            plans: Arc::new(plans),
            started: Instant::now(),
            within,
            wait_for_decision,
            progress: ProgressBar::hidden(),
        })
    }

    /// `buyers` buyers, coming as `arrivals` says, each in a task of its own; a progress bar
    /// on the terminal counts the decided ones. The clock starts now.
    pub async fn buy(mut self, buyers: usize, arrivals: Arrivals) -> anyhow::Result<Vec<Buyer>> {
        self.progress = ProgressBar::new(buyers as u64).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} buyers decided")
                .context("progress bar template")?,
        );
        self.started = Instant::now();
        let bought = match arrivals {
            Arrivals::AtOnce(concurrency) => {
                futures::stream::iter(0..buyers)
                    .map(|i| tokio::spawn(self.clone().one(i, None)))
                    .buffer_unordered(concurrency.max(1))
                    .collect::<Vec<_>>()
                    .await
            }
            Arrivals::PerSecond(rate) => {
                let tasks = self.arrive(buyers, rate).await;
                futures::future::join_all(tasks).await
            }
        };
        self.progress.finish_and_clear();
        bought
            .into_iter()
            .collect::<Result<_, _>>()
            .context("a buyer's task")
    }

    /// Starts buyer `i` at `i / rate` seconds (`rate` above 0) after the clock started, on the timer's
    /// millisecond ticks (every buyer due by a tick starts at it, timed from when it was due).
    async fn arrive(&self, buyers: usize, rate: f64) -> Vec<tokio::task::JoinHandle<Buyer>> {
        let mut tasks = Vec::with_capacity(buyers);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while tasks.len() < buyers {
            tick.tick().await;
            let elapsed = self.started.elapsed().as_secs_f64();
            let due = ((elapsed * rate).floor() as usize + 1).min(buyers);
            for i in tasks.len()..due {
                let arrival = self.started + Duration::from_secs_f64(i as f64 / rate);
                tasks.push(tokio::spawn(self.clone().one(i, Some(arrival))));
            }
        }
        tasks
    }

    /// Buyer `i`'s sale; `arrival` is when an open loop's buyer was due.
    async fn one(self, i: usize, arrival: Option<Instant>) -> Buyer {
        let mut buyer = Buyer::default();
        if let Err(err) = self.follow(i, arrival, &mut buyer).await {
            buyer.failure = Some(format!("buyer {i}: {err:#}"));
        }
        if buyer.decided_at.is_none() {
            self.progress.inc(1);
        }
        buyer
    }

    async fn follow(
        &self,
        i: usize,
        arrival: Option<Instant>,
        buyer: &mut Buyer,
    ) -> anyhow::Result<()> {
        let mut orders = self.orders[i % self.orders.len()].clone();
        let user_id = format!("flash-buyer-{i}");
        // The buyer brings a token a gateway signed; its signing is not the sale's.
        let me = self.keys.buyer(&user_id)?;
        let sent = arrival.unwrap_or_else(Instant::now);
        let created = orders
            .create_order(me.on(pb::CreateOrderRequest {
                user_id,
                tier_id: self.tier_id,
                quantity: 1,
                request_id: format!("flash-{}-{i}", self.tier_id),
                wait_for_decision: self.wait_for_decision,
                contact: None,
            }))
            .await;
        buyer.create_us = micros(sent.elapsed());
        let order = match created {
            Ok(order) => order.into_inner(),
            // A limit's refusal carries a retry delay; a sold-out tier's does not.
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tonic_types::StatusExt::get_details_retry_info(&status).is_none() =>
            {
                buyer.refused_at_once = true;
                self.decided(buyer);
                return Ok(());
            }
            Err(status) => bail!("CreateOrder: {:?} {}", status.code(), status.message()),
        };
        let accepted = Instant::now();
        let order_no = order.order_no.clone();
        buyer.order = Some(order.clone());
        let order = if buyers::is_decided(order.status()) {
            order
        } else {
            buyers::watch_until(&mut orders, &order_no, buyers::is_decided, self.within, &me)
                .await?
        };
        buyer.decision_us = Some(micros(accepted.elapsed()));
        buyer.decided_wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_micros()).ok());
        self.decided(buyer);
        let reserved = order.status() == pb::OrderStatus::AwaitingPayment;
        buyer.order = Some(order.clone());
        if !reserved {
            return Ok(());
        }
        let plan = self.plans.next();
        let order = buyers::act(&mut orders, plan, order, &me, &self.payment)
            .await
            .with_context(|| format!("{plan:?} {order_no}"))?;
        buyer.order = Some(order);
        if plan != Plan::Pay {
            return Ok(());
        }
        buyer.paid_at = Some(self.started.elapsed());
        let confirmed =
            buyers::watch_until(&mut orders, &order_no, buyers::is_final, self.within, &me).await?;
        if confirmed.status() == pb::OrderStatus::Confirmed {
            buyer.confirmed_at = Some(self.started.elapsed());
        }
        buyer.order = Some(confirmed);
        Ok(())
    }

    fn decided(&self, buyer: &mut Buyer) {
        buyer.decided_at = Some(self.started.elapsed());
        self.progress.inc(1);
    }
}

/// One order on a tier of its own, paid and followed until confirmed, before the clock starts.
/// The first messages in a fresh namespace wait for the producers' routes and the consumers'
/// queues to settle (seconds), which no buyer of a running system waits for.
pub async fn warm_up(
    orders: &OrderServiceClient<Channel>,
    stock: &Channel,
    token: &str,
    keys: &Keys,
    wait_secs: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sale = Sale {
        title: "Flash Sale Bench",
        venue: "Loopback Arena",
        tier: "Warm-up".into(),
        price_cents: 7_500,
        total: 1,
        per_user_limit: 1,
    };
    let tier = put_on_sale(stock.clone(), token, sale).await?;
    let mut orders = orders.clone();
    let (me, payment) = (keys.buyer("flash-warm-up")?, keys.payment()?);
    let order = orders
        .create_order(me.on(pb::CreateOrderRequest {
            user_id: "flash-warm-up".into(),
            tier_id: tier.tier_id,
            quantity: 1,
            request_id: format!("flash-warm-up-{}", tier.tier_id),
            wait_for_decision: false,
            contact: None,
        }))
        .await
        .context("warm-up CreateOrder")?
        .into_inner();
    let within = Duration::from_secs(wait_secs);
    let decided = buyers::watch_until(
        &mut orders,
        &order.order_no,
        buyers::is_decided,
        within,
        &me,
    )
    .await?;
    if decided.status() != pb::OrderStatus::AwaitingPayment {
        bail!(
            "the warm-up order was not reserved: {}",
            buyers::ending(&decided)
        );
    }
    buyers::act(&mut orders, Plan::Pay, decided, &me, &payment).await?;
    let paid =
        buyers::watch_until(&mut orders, &order.order_no, buyers::is_final, within, &me).await?;
    if paid.status() != pb::OrderStatus::Confirmed {
        bail!("the warm-up order ended {}", buyers::ending(&paid));
    }
    Ok(started.elapsed())
}

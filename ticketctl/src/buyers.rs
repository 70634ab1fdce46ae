//! What a buyer does through order-svc, shared by the demo and the flash-sale bench: follow an
//! order until the saga has decided it, pay or cancel it by plan, and wait until orders are
//! final.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// A channel to a service at `addr`, connected now.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    crate::endpoint(addr)?.connect().await.with_context(|| {
        format!("cannot reach {addr}; are the services running (`scripts/run.sh`)?")
    })
}

/// What the demo's and the bench's buyers present: each buyer a token of their own, signed
/// with the secret the services verify (as a gateway would issue it), and payments the payment
/// callback's token. The defaults are the services' `dev` profile's.
#[derive(Clone, clap::Args)]
pub struct Keys {
    /// The HS256 secret buyer tokens are signed with: the services' `buyers.jwt_secret`
    /// (`TICKET_BUYER_JWT_SECRET`).
    #[arg(
        long,
        env = "TICKET_BUYER_JWT_SECRET",
        default_value = ticket_platform::auth::DEV_BUYER_SECRET,
        hide_env_values = true
    )]
    pub buyer_secret: String,
    /// The payment callback's token: order-svc's `payments.token` (`TICKET_PAYMENT_TOKEN`).
    #[arg(
        long,
        env = "TICKET_PAYMENT_TOKEN",
        default_value = ticket_platform::auth::DEV_PAYMENT_TOKEN,
        hide_env_values = true
    )]
    pub payment_token: String,
    /// Present no credential at all (services of the `dev` profile take such calls as their
    /// request says): what identity costs is the difference.
    #[arg(skip)]
    pub anonymous: bool,
}

impl Keys {
    /// `user_id`'s token, valid for `valid_for`.
    pub fn buyer_token(&self, user_id: &str, valid_for: Duration) -> anyhow::Result<String> {
        let secs = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX);
        ticket_platform::auth::sign_buyer_token(&self.buyer_secret, user_id, secs)
            .context("sign a buyer token")
    }

    /// A buyer's credential for a sale (valid for a day).
    pub fn buyer(&self, user_id: &str) -> anyhow::Result<Bearer> {
        if self.anonymous {
            return Ok(Bearer(None));
        }
        Bearer::new(&self.buyer_token(user_id, Duration::from_secs(86_400))?)
    }

    pub fn payment(&self) -> anyhow::Result<Bearer> {
        if self.anonymous {
            return Ok(Bearer(None));
        }
        Bearer::new(&self.payment_token)
    }
}

/// `authorization: Bearer <token>`, ready to put on requests (or nothing, for
/// [`Keys::anonymous`]).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(Some(
            format!("Bearer {token}")
                .parse()
                .context("a token is not ASCII")?,
        )))
    }

    /// `message` with this credential.
    pub fn on<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}

/// What a buyer does once reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Pay,
    Cancel,
    LetExpire,
}

/// The shares of reserved buyers who pay and who cancel, in percent (the rest let the payment
/// deadline pass), handed out to reserved buyers as they come.
#[derive(Debug)]
pub struct Plans {
    /// Percent of `Plan::Pay`, `Plan::Cancel`, `Plan::LetExpire`.
    shares: [usize; 3],
    /// How many of each were handed out.
    given: Mutex<[usize; 3]>,
}

impl Plans {
    pub fn new(pay: usize, cancel: usize) -> anyhow::Result<Self> {
        if pay + cancel > 100 {
            bail!("--pay and --cancel add up to more than 100 percent");
        }
        Ok(Self {
            shares: [pay, cancel, 100 - pay - cancel],
            given: Mutex::new([0; 3]),
        })
    }

    /// The plan of the next reserved buyer: the one furthest behind its share, so the shares
    /// hold however few buyers are reserved and in whichever order they come.
    pub fn next(&self) -> Plan {
        const PLANS: [Plan; 3] = [Plan::Pay, Plan::Cancel, Plan::LetExpire];
        let mut given = self.given.lock().unwrap_or_else(PoisonError::into_inner);
        let n = given.iter().sum::<usize>() + 1;
        // In hundredths of a buyer: what the share asks for after this one, less what it has.
        let behind = |k: usize| (self.shares[k] * n) as i64 - (given[k] * 100) as i64;
        let mut pick = 0;
        for k in 1..3 {
            if behind(k) > behind(pick) {
                pick = k;
            }
        }
        given[pick] += 1;
        PLANS[pick]
    }
}

/// Carries out `plan` on a reserved `order` of `buyer`, a payment coming from the payment
/// callback (`payment`): the order as order-svc answered (unchanged when the buyer lets the
/// deadline pass).
pub async fn act(
    orders: &mut OrderServiceClient<Channel>,
    plan: Plan,
    order: pb::Order,
    buyer: &Bearer,
    payment: &Bearer,
) -> Result<pb::Order, tonic::Status> {
    let answer = match plan {
        Plan::Pay => {
            orders
                .pay_order(payment.on(pb::PayOrderRequest {
                    payment_ref: format!("pay-{}", order.order_no),
                    order_no: order.order_no,
                    amount_cents: order.total_cents,
                }))
                .await?
        }
        Plan::Cancel => {
            orders
                .cancel_order(buyer.on(pb::CancelOrderRequest {
                    order_no: order.order_no,
                    reason: "changed my mind".into(),
                }))
                .await?
        }
        Plan::LetExpire => return Ok(order),
    };
    Ok(answer.into_inner())
}

/// Whether the saga has decided the order: reserved for payment, or cancelled.
pub fn is_decided(status: pb::OrderStatus) -> bool {
    matches!(
        status,
        pb::OrderStatus::AwaitingPayment | pb::OrderStatus::Cancelled
    )
}

pub fn is_final(status: pb::OrderStatus) -> bool {
    matches!(
        status,
        pb::OrderStatus::Confirmed | pb::OrderStatus::Cancelled
    )
}

/// Follows `order_no` with `WatchOrder` (as `buyer`) until its status is `wanted` or final,
/// within `within`; watches again when order-svc asks it to (UNAVAILABLE).
pub async fn watch_until(
    orders: &mut OrderServiceClient<Channel>,
    order_no: &str,
    wanted: fn(pb::OrderStatus) -> bool,
    within: Duration,
    buyer: &Bearer,
) -> anyhow::Result<pb::Order> {
    let watching = async {
        loop {
            let request = buyer.on(pb::WatchOrderRequest {
                order_no: order_no.to_owned(),
            });
            let mut changes = match orders.watch_order(request).await {
                Ok(stream) => stream.into_inner(),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(status) => bail!("WatchOrder {order_no}: {}", status.message()),
            };
            while let Some(change) = changes.next().await {
                match change {
                    Ok(order) if wanted(order.status()) || is_final(order.status()) => {
                        return Ok(order);
                    }
                    Ok(_) => {}
                    Err(status) if status.code() == tonic::Code::Unavailable => break,
                    Err(status) => bail!("WatchOrder {order_no}: {}", status.message()),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(within, watching)
        .await
        .with_context(|| {
            format!("order {order_no} did not reach the awaited status within {within:?}")
        })?
}

/// The orders `order_nos` once every one is final (CONFIRMED or CANCELLED), asking as an
/// operator (`admin`) `concurrency` at a time, every half second, until `within` has passed.
pub async fn wait_until_final(
    orders: &OrderServiceClient<Channel>,
    order_nos: Vec<String>,
    concurrency: usize,
    within: Duration,
    admin: &Bearer,
) -> anyhow::Result<Vec<pb::Order>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut open = order_nos;
    let mut finals = Vec::with_capacity(open.len());
    loop {
        let looked: Vec<Result<pb::Order, tonic::Status>> = futures::stream::iter(open)
            .map(|order_no| {
                let mut orders = orders.clone();
                let request = admin.on(pb::GetOrderRequest { order_no });
                async move {
                    let answer = orders.get_order(request).await?;
                    Ok(answer.into_inner())
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        open = Vec::new();
        for order in looked {
            let order = order.context("GetOrder")?;
            if is_final(order.status()) {
                finals.push(order);
            } else {
                open.push(order.order_no);
            }
        }
        if open.is_empty() {
            return Ok(finals);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} order(s) not final within {within:?}, {} among them",
                open.len(),
                open[0]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How an order ended, for a tally: `CONFIRMED`, `CANCELLED SOLD_OUT`, ...
pub fn ending(order: &pb::Order) -> String {
    match order.status() {
        pb::OrderStatus::Cancelled => format!(
            "CANCELLED {}",
            order
                .cancel_reason()
                .as_str_name()
                .trim_start_matches("CANCEL_REASON_")
        ),
        status => status
            .as_str_name()
            .trim_start_matches("ORDER_STATUS_")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Plan, Plans};

    fn count(plans: &Plans, buyers: usize) -> [usize; 3] {
        let mut counts = [0; 3];
        for _ in 0..buyers {
            match plans.next() {
                Plan::Pay => counts[0] += 1,
                Plan::Cancel => counts[1] += 1,
                Plan::LetExpire => counts[2] += 1,
            }
        }
        counts
    }

    #[test]
    fn few_reserved_buyers_still_get_every_plan_in_its_share() {
        assert_eq!(count(&Plans::new(60, 20).expect("valid"), 10), [6, 2, 2]);
        assert_eq!(
            count(&Plans::new(60, 20).expect("valid"), 100),
            [60, 20, 20]
        );
        assert_eq!(count(&Plans::new(100, 0).expect("valid"), 7), [7, 0, 0]);
        assert_eq!(count(&Plans::new(0, 0).expect("valid"), 3), [0, 0, 3]);
    }

    #[test]
    fn shares_above_a_hundred_percent_are_refused() {
        assert!(Plans::new(90, 20).is_err());
    }
}

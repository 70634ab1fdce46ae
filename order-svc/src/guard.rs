//! Who may call order-svc, and how often: buyer tokens (a buyer reaches only their own orders),
//! the payment callback's token, the `CreateOrder` limits per buyer and per peer, and how many
//! `CreateOrder`s a replica takes at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ticket_platform::auth::{Access, AccessConfig, Actor, BuyerTokens};
use ticket_platform::config::ConfigSource;
use ticket_platform::rate_limit::{self, Limiter, Rate};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Status};

/// A buyer's `CreateOrder`s: 5 a second, 10 at once.
pub const PER_BUYER: Rate = Rate {
    per_second: 5.0,
    burst: 10,
};

/// `CreateOrder`s a replica takes at once, unless set.
pub const IN_FLIGHT: usize = 256;
/// How soon a `CreateOrder` refused because the replica was full may come again, unless set.
pub const BUSY_RETRY: Duration = Duration::from_millis(100);

/// `buyers.*`, `payments.token`, `limits.create_per_buyer.*`, `limits.create_per_peer.*`,
/// `limits.create_in_flight`, `limits.create_busy_retry_ms`.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    pub buyers: BuyerTokens,
    /// The payment provider's callback presents it to `PayOrder`.
    pub payment_token: String,
    pub per_buyer: Rate,
    /// Per client address; off by default: behind a gateway every buyer comes from the
    /// gateway's address.
    pub per_peer: Rate,
    /// `CreateOrder`s taken at once (0: no limit). One past it is refused at once rather than
    /// queued behind the others for the stores' timeouts: under a load the replica cannot
    /// keep up with, the buyers it can serve are answered in milliseconds.
    pub in_flight: usize,
    /// The retry delay such a refusal gives.
    pub busy_retry: Duration,
}

impl GuardConfig {
    pub fn load(source: &mut ConfigSource, access: &AccessConfig) -> Self {
        Self {
            buyers: BuyerTokens::load(source, access.dev),
            payment_token: ticket_platform::auth::token(
                source,
                access.dev,
                "payments.token",
                ticket_platform::auth::DEV_PAYMENT_TOKEN,
            ),
            per_buyer: Rate::load(source, "limits.create_per_buyer", PER_BUYER),
            per_peer: Rate::load(source, "limits.create_per_peer", Rate::OFF),
            in_flight: source.get("limits.create_in_flight", IN_FLIGHT),
            busy_retry: source.millis("limits.create_busy_retry_ms", BUSY_RETRY),
        }
    }
}

pub struct Guard {
    pub access: Access,
    per_buyer: Limiter<String>,
    per_peer: Limiter<IpAddr>,
    /// The places and how many there are; `None`: no limit.
    in_flight: Option<(Arc<Semaphore>, usize)>,
    busy_retry: Duration,
}

impl Guard {
    pub fn new(access: &AccessConfig, config: &GuardConfig) -> Result<Self, String> {
        Ok(Self {
            access: Access::with_buyers(access, &config.buyers, Some(&config.payment_token))?,
            per_buyer: Limiter::new(config.per_buyer),
            per_peer: Limiter::new(config.per_peer),
            in_flight: (config.in_flight > 0)
                .then(|| (Arc::new(Semaphore::new(config.in_flight)), config.in_flight)),
            busy_retry: config.busy_retry,
        })
    }

    /// A place among the `CreateOrder`s this replica takes at once, held until the order is
    /// accepted or refused; `RESOURCE_EXHAUSTED` with the retry delay when every place is
    /// taken (`None`: no limit).
    #[allow(clippy::result_large_err)]
    pub fn create_place(&self) -> Result<Option<OwnedSemaphorePermit>, Status> {
        let Some((places, count)) = &self.in_flight else {
            return Ok(None);
        };
        Arc::clone(places)
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| {
                rate_limit::exhausted(
                    &format!("order-svc is taking {count} new orders at once"),
                    self.busy_retry,
                )
            })
    }

    /// A `CreateOrder` of `user_id` from the request's peer, within both limits. The peer's
    /// bucket is taken from first: a buyer past their own limit still costs their peer.
    #[allow(clippy::result_large_err)]
    pub fn create_allowed<T>(&self, request: &Request<T>, user_id: &str) -> Result<(), Status> {
        if let Some(peer) = request.remote_addr() {
            self.per_peer
                .take(peer.ip())
                .map_err(|wait| rate_limit::exhausted(&format!("peer {}", peer.ip()), wait))?;
        }
        self.per_buyer
            .take(user_id.to_owned())
            .map_err(|wait| rate_limit::exhausted(&format!("user {user_id}"), wait))
    }

    /// The buyer call's actor (see [`Access::buyer`]).
    #[allow(clippy::result_large_err)]
    pub fn buyer<T>(&self, request: &Request<T>) -> Result<Actor, Status> {
        self.access.buyer(request)
    }
}

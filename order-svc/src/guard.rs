//! Who may call order-svc, and how often: buyer tokens (a buyer reaches only their own orders),
//! the payment callback's token, and the `CreateOrder` limits per buyer and per peer.

use std::net::IpAddr;

use ticket_platform::auth::{Access, AccessConfig, Actor, BuyerTokens};
use ticket_platform::config::ConfigSource;
use ticket_platform::rate_limit::{self, Limiter, Rate};
use tonic::{Request, Status};

/// A buyer's `CreateOrder`s: 5 a second, 10 at once.
pub const PER_BUYER: Rate = Rate {
    per_second: 5.0,
    burst: 10,
};

/// `buyers.*`, `payments.token`, `limits.create_per_buyer.*`, `limits.create_per_peer.*`.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    pub buyers: BuyerTokens,
    /// The payment provider's callback presents it to `PayOrder`.
    pub payment_token: String,
    pub per_buyer: Rate,
    /// Per client address; off by default: behind a gateway every buyer comes from the
    /// gateway's address.
    pub per_peer: Rate,
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
        }
    }
}

pub struct Guard {
    pub access: Access,
    per_buyer: Limiter<String>,
    per_peer: Limiter<IpAddr>,
}

impl Guard {
    pub fn new(access: &AccessConfig, config: &GuardConfig) -> Result<Self, String> {
        Ok(Self {
            access: Access::with_buyers(access, &config.buyers, Some(&config.payment_token))?,
            per_buyer: Limiter::new(config.per_buyer),
            per_peer: Limiter::new(config.per_peer),
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

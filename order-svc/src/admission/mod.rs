//! Admission: whether a new order may be accepted, decided in one Redis script on the tier's
//! live stock. An order is accepted only while the tier's `available` tickets exceed those
//! already promised to accepted orders whose prededuct has not run yet, so buyers are told
//! "accepted" for about as many tickets as there are (the over-acceptance of a flash sale is
//! bounded by the promises let go before their prededuct, see [`Admission::hold`]). A refusal
//! touches neither Postgres nor anything but this one script; a repeated request is recognised
//! in the same script and answered with its order. Key layout and the rules of a promise:
//! [`ticket_platform::stock_keys`].

use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;
use fred::types::scripts::Script;
use ticket_platform::stock_keys;

use crate::error::Error;
use crate::tiers::TierInfo;

/// What the admission script said of a new order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// `quantity` tickets are promised to the new order number.
    Promised,
    /// The request was admitted before, as this order number.
    Repeat(String),
    /// Every ticket left is sold or promised.
    SoldOut,
    /// Redis does not hold the tier (stock-svc loads it on its first prededuct): admitted
    /// without a promise.
    Unloaded,
}

#[derive(Clone)]
pub struct Admission {
    redis: Pool,
    key_prefix: String,
    /// How long a promise holds its tickets when its prededuct does not come
    /// (`admission.hold_ms`); zero turns admission off (only the sold-out flag refuses).
    hold: Duration,
    admit: Script,
    withdraw: Script,
}

impl Admission {
    pub fn new(redis: Pool, key_prefix: &str, hold: Duration) -> Self {
        let script =
            |body: &str| Script::from_lua([stock_keys::RELEASE_PROMISE_LUA, body].concat());
        Self {
            redis,
            key_prefix: key_prefix.to_owned(),
            hold,
            admit: script(include_str!("admit.lua")),
            withdraw: script(include_str!("withdraw.lua")),
        }
    }

    /// Whether admission is on (a non-zero hold).
    pub fn is_on(&self) -> bool {
        !self.hold.is_zero()
    }

    /// How long a promise holds its tickets at most.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    fn keys(&self, tier: &TierInfo) -> Vec<String> {
        let (prefix, session, id) = (&self.key_prefix, tier.session_id, tier.tier_id);
        vec![
            stock_keys::meta(prefix, session, id),
            stock_keys::promises(prefix, session, id),
            stock_keys::promised_at(prefix, session, id),
            stock_keys::requests(prefix, session, id),
        ]
    }

    /// Asks to promise `quantity` tickets of `tier` to `order_no`, a new order of
    /// (`user_id`, `request_id`).
    pub async fn admit(
        &self,
        tier: &TierInfo,
        order_no: &str,
        user_id: &str,
        request_id: &str,
        quantity: i32,
    ) -> Result<Admitted, Error> {
        let hold_ms = i64::try_from(self.hold.as_millis()).unwrap_or(i64::MAX);
        let args: Vec<Value> = vec![
            order_no.into(),
            user_id.into(),
            request_id.into(),
            i64::from(quantity).into(),
            hold_ms.into(),
        ];
        let (word, order_no): (String, String) = self
            .admit
            .evalsha_with_reload(self.redis.next(), self.keys(tier), args)
            .await?;
        Ok(match word.as_str() {
            "ADMITTED" => Admitted::Promised,
            "REPEAT" => Admitted::Repeat(order_no),
            "SOLD_OUT" => Admitted::SoldOut,
            "UNLOADED" => Admitted::Unloaded,
            other => {
                return Err(Error::Redis(fred::error::Error::new(
                    fred::error::ErrorKind::Parse,
                    format!("the admission script answered {other:?}"),
                )));
            }
        })
    }

    /// Undoes the promise to `order_no`, whose order was not written; the request then names
    /// `existing` (the order it already had), or nothing.
    pub async fn withdraw(
        &self,
        tier: &TierInfo,
        order_no: &str,
        user_id: &str,
        request_id: &str,
        existing: Option<&str>,
    ) -> Result<(), Error> {
        let args: Vec<Value> = vec![
            order_no.into(),
            user_id.into(),
            request_id.into(),
            existing.unwrap_or_default().into(),
        ];
        let _: i64 = self
            .withdraw
            .evalsha_with_reload(self.redis.next(), self.keys(tier), args)
            .await?;
        Ok(())
    }
}

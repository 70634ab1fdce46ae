//! The live stock of each ticket tier in Redis: the fast gate every buyer goes through.
//!
//! One Lua script per operation, each atomic, each idempotent on the order number thanks to a
//! fence per order (`D`educted, `C`onfirmed, `R`olled back) kept next to the counters. A
//! buyer's limit is the session's, counted across its tiers (a tier may cap its own share
//! lower), so every key of a session's tiers carries the session's hash tag `{session:ID}`
//! (layout in [`ticket_platform::stock_keys`]) and one script sees the buyer's holdings in the
//! whole session. Scripts are loaded once and called by SHA; when Redis answers NOSCRIPT (a
//! restart, a failover) they are loaded again and the call is repeated. Invariant of every
//! tier: `available + deducted + confirmed == total`.
//!
//! Redis may come back from a restart, a failover or a restore older than the ledger, still
//! holding the tier. So every tier carries the `run_id` of the Redis process it was last
//! loaded or checked on, and the scripts that change a fence compare it with the running
//! process' (`INFO server`, inside the script, so no call slips between a restart and the
//! check): a tier not checked since Redis started answers [`GateError::Unverified`] and changes
//! nothing until [`StockGate::verify`] recorded its check against the ledger (`run_id.lua`).

mod fence;
mod load;
mod verify;

use std::sync::Arc;

use fred::prelude::*;
use fred::types::Value;
use ticket_platform::stock_keys;
use tokio::sync::RwLock;

pub use self::fence::{
    Fence, FenceChange, FenceOutcome, FenceState, PredeductOutcome, Prededucted,
};
pub use self::load::{SessionLoad, SessionStock, TierStock};
pub use self::verify::Verified;

const RUN_ID: &str = include_str!("run_id.lua");
const PREDEDUCT: &str = include_str!("prededuct.lua");
const ROLLBACK: &str = include_str!("rollback.lua");
const CONFIRM: &str = concat!(include_str!("run_id.lua"), include_str!("confirm.lua"));
const LOAD: &str = concat!(include_str!("run_id.lua"), include_str!("load.lua"));
const VERIFY: &str = concat!(include_str!("run_id.lua"), include_str!("verify.lua"));

/// A tier, and the session whose hash tag its keys carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TierRef {
    pub session_id: i64,
    pub tier_id: i64,
}

impl From<&ticket_proto::stock::v1::Tier> for TierRef {
    fn from(tier: &ticket_proto::stock::v1::Tier) -> Self {
        Self {
            session_id: tier.session_id,
            tier_id: tier.tier_id,
        }
    }
}

/// A tier's counters as Redis holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounters {
    pub total: i64,
    pub available: i64,
    pub deducted: i64,
    pub confirmed: i64,
    pub sold_out: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// Redis does not hold the tier or its session's holdings (never loaded, or lost): load
    /// the session from the ledger first.
    #[error("tier {0} is not loaded in Redis")]
    NotLoaded(i64),
    /// Redis started anew (run `run_id`) since the tier was last checked against the ledger:
    /// check its session ([`StockGate::verify`]) first.
    #[error("tier {tier_id} was not checked against the ledger since Redis started")]
    Unverified { tier_id: i64, run_id: String },
    #[error("unexpected answer from a stock script: {0}")]
    Protocol(String),
}

/// A script that ends an order's promise: the run-id check, the promise's release, then `body`.
fn promise_ending(body: &str) -> String {
    [RUN_ID, stock_keys::RELEASE_PROMISE_LUA, body].concat()
}

/// The stock scripts, loaded on a Redis connection pool.
#[derive(Clone)]
pub struct StockGate {
    pool: Pool,
    shas: Arc<RwLock<Shas>>,
    key_prefix: Arc<str>,
}

#[derive(Default)]
struct Shas {
    prededuct: String,
    rollback: String,
    confirm: String,
    load: String,
    verify: String,
}

#[derive(Clone, Copy)]
enum Script {
    Prededuct,
    Rollback,
    Confirm,
    Load,
    Verify,
}

impl Script {
    fn sha(self, shas: &Shas) -> String {
        match self {
            Self::Prededuct => shas.prededuct.clone(),
            Self::Rollback => shas.rollback.clone(),
            Self::Confirm => shas.confirm.clone(),
            Self::Load => shas.load.clone(),
            Self::Verify => shas.verify.clone(),
        }
    }
}

impl StockGate {
    /// Connects a pool of `connections` to `url` and loads the scripts. Every key starts with
    /// `key_prefix` (`stock` in production), so deployments can share one Redis.
    pub async fn connect(
        url: &str,
        connections: usize,
        key_prefix: &str,
    ) -> Result<Self, GateError> {
        let pool = ticket_platform::redis::connect(url, connections).await?;
        let gate = Self {
            pool,
            shas: Arc::new(RwLock::new(Shas::default())),
            key_prefix: Arc::from(key_prefix),
        };
        gate.load_scripts().await?;
        Ok(gate)
    }

    /// The keys of a session's own (meta, users).
    fn session_keys(&self, session_id: i64) -> Vec<String> {
        let prefix = &self.key_prefix;
        vec![
            stock_keys::session_meta(prefix, session_id),
            stock_keys::session_users(prefix, session_id),
        ]
    }

    /// The keys of one tier (meta, fences, users).
    fn tier_keys(&self, tier: TierRef) -> [String; 3] {
        let prefix = &self.key_prefix;
        let TierRef {
            session_id,
            tier_id,
        } = tier;
        [
            stock_keys::meta(prefix, session_id, tier_id),
            stock_keys::fences(prefix, session_id, tier_id),
            stock_keys::users(prefix, session_id, tier_id),
        ]
    }

    /// The keys a script on one tier is called with: the session's meta and users, then the
    /// tier's meta, fences and users, all under the hash tag `{session:ID}`.
    pub fn keys(&self, tier: TierRef) -> Vec<String> {
        let mut keys = self.session_keys(tier.session_id);
        keys.extend(self.tier_keys(tier));
        keys
    }

    /// The keys of the scripts that end an order's promise (prededuct, rollback): [`Self::keys`],
    /// then the tier's promises and promised_at.
    pub fn fence_keys(&self, tier: TierRef) -> Vec<String> {
        let mut keys = self.keys(tier);
        let prefix = &self.key_prefix;
        keys.push(stock_keys::promises(prefix, tier.session_id, tier.tier_id));
        keys.push(stock_keys::promised_at(
            prefix,
            tier.session_id,
            tier.tier_id,
        ));
        keys
    }

    /// The SHA the prededuct script is called by (`ticketctl bench stock` calls it raw).
    pub async fn prededuct_sha(&self) -> String {
        self.shas.read().await.prededuct.clone()
    }

    async fn load_scripts(&self) -> Result<(), GateError> {
        let client = self.pool.next();
        let shas = Shas {
            prededuct: client.script_load(promise_ending(PREDEDUCT)).await?,
            rollback: client.script_load(promise_ending(ROLLBACK)).await?,
            confirm: client.script_load(CONFIRM).await?,
            load: client.script_load(LOAD).await?,
            verify: client.script_load(VERIFY).await?,
        };
        *self.shas.write().await = shas;
        Ok(())
    }

    /// Runs a script by SHA; on NOSCRIPT (Redis restarted or failed over) loads the scripts
    /// again and repeats the call once.
    async fn run<R: FromValue>(
        &self,
        script: Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, GateError> {
        let sha = script.sha(&*self.shas.read().await);
        match self
            .pool
            .next()
            .evalsha(sha, keys.clone(), args.clone())
            .await
        {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                tracing::warn!("Redis lost the stock scripts; loading them again");
                self.load_scripts().await?;
                let sha = script.sha(&*self.shas.read().await);
                Ok(self.pool.next().evalsha(sha, keys, args).await?)
            }
            other => Ok(other?),
        }
    }

    pub async fn prededuct(
        &self,
        tier: TierRef,
        order_no: &str,
        user_id: &str,
        quantity: i64,
    ) -> Result<Prededucted, GateError> {
        let reply: Vec<Value> = self
            .run(
                Script::Prededuct,
                self.fence_keys(tier),
                vec![order_no.into(), user_id.into(), quantity.into()],
            )
            .await?;
        let (word, available, price, last) = parse_reply(&reply)?;
        let outcome = match word.as_str() {
            "DEDUCTED" => PredeductOutcome::Deducted,
            "SOLD_OUT" => PredeductOutcome::SoldOut,
            "LIMIT_REACHED" => PredeductOutcome::LimitReached,
            "SALE_NOT_OPEN" => PredeductOutcome::SaleNotOpen,
            "SALE_CLOSED" => PredeductOutcome::SaleClosed,
            "ALREADY_ROLLED_BACK" => PredeductOutcome::AlreadyRolledBack,
            "NOT_LOADED" => return Err(GateError::NotLoaded(tier.tier_id)),
            "UNVERIFIED" => return Err(unverified(tier, last)),
            other => return Err(GateError::Protocol(other.to_owned())),
        };
        Ok(Prededucted {
            outcome,
            available,
            unit_price_cents: price,
            stamp: stamp_at(&reply, 3)?,
        })
    }

    pub async fn rollback(&self, tier: TierRef, order_no: &str) -> Result<FenceChange, GateError> {
        let reply: Vec<Value> = self
            .run(
                Script::Rollback,
                self.fence_keys(tier),
                vec![order_no.into()],
            )
            .await?;
        fence_change(tier, &reply)
    }

    pub async fn confirm(&self, tier: TierRef, order_no: &str) -> Result<FenceChange, GateError> {
        let reply: Vec<Value> = self
            .run(Script::Confirm, self.keys(tier), vec![order_no.into()])
            .await?;
        fence_change(tier, &reply)
    }

    /// The tier's counters, or `None` when Redis does not hold it.
    pub async fn counters(&self, tier: TierRef) -> Result<Option<TierCounters>, GateError> {
        let [meta, ..] = self.tier_keys(tier);
        let fields: Vec<Option<i64>> = self
            .pool
            .next()
            .hmget(
                meta,
                vec!["total", "available", "deducted", "confirmed", "sold_out"],
            )
            .await?;
        let [
            Some(total),
            Some(available),
            Some(deducted),
            Some(confirmed),
            sold_out,
        ] = fields[..]
        else {
            return Ok(None);
        };
        Ok(Some(TierCounters {
            total,
            available,
            deducted,
            confirmed,
            sold_out: sold_out == Some(1),
        }))
    }

    /// Every fence of a tier as Redis holds it (reconciliation).
    pub async fn fences(&self, tier: TierRef) -> Result<Vec<Fence>, GateError> {
        let [_, fences, _] = self.tier_keys(tier);
        let raw: std::collections::HashMap<String, String> =
            self.pool.next().hgetall(fences).await?;
        raw.into_iter()
            .map(|(order_no, value)| {
                Fence::decode(order_no, &value)
                    .ok_or_else(|| GateError::Protocol(format!("fence {value:?}")))
            })
            .collect()
    }

    /// The tickets a buyer holds (deducted or confirmed) across every tier of a session, as
    /// the limit counts them.
    pub async fn held_in_session(&self, session_id: i64, user_id: &str) -> Result<i64, GateError> {
        let held: Option<i64> = self
            .pool
            .next()
            .hget(
                stock_keys::session_users(&self.key_prefix, session_id),
                user_id,
            )
            .await?;
        Ok(held.unwrap_or(0))
    }

    /// Whether the tier's sold-out flag is set (order-svc refuses at once when it is).
    pub async fn is_sold_out(&self, tier: TierRef) -> Result<bool, GateError> {
        let [meta, ..] = self.tier_keys(tier);
        let flag: Option<i64> = self
            .pool
            .next()
            .hget(meta, stock_keys::SOLD_OUT_FIELD)
            .await?;
        Ok(flag == Some(1))
    }

    /// Forgets a tier's keys (tests of reloading, the repair rule, operators retiring a tier).
    /// Its buyers' holdings stay in the session's count until the tier is loaded again, which
    /// computes the session's holdings afresh.
    pub async fn forget(&self, tier: TierRef) -> Result<(), GateError> {
        let _: i64 = self.pool.next().del(self.tier_keys(tier).to_vec()).await?;
        Ok(())
    }

    /// Forgets a session's keys and those of its tiers `tier_ids`: what Redis losing its data
    /// looks like to one session (tests), or a session retired.
    pub async fn forget_session(&self, session_id: i64, tier_ids: &[i64]) -> Result<(), GateError> {
        let mut keys = self.session_keys(session_id);
        for &tier_id in tier_ids {
            keys.extend(self.tier_keys(TierRef {
                session_id,
                tier_id,
            }));
        }
        let _: i64 = self.pool.next().del(keys).await?;
        Ok(())
    }

    /// The underlying pool, for callers that need a plain Redis command.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// A script's answer: `{word, number, number[, user]}`.
fn parse_reply(reply: &[Value]) -> Result<(String, i64, i64, String), GateError> {
    let bad = || GateError::Protocol(format!("{reply:?}"));
    let (word, a, b, user) = match reply {
        [word, a, b] => (word, a, b, None),
        [word, a, b, user] => (word, a, b, Some(user)),
        _ => return Err(bad()),
    };
    let user = match user {
        Some(user) => user.as_string().ok_or_else(bad)?,
        None => String::new(),
    };
    Ok((
        word.as_string().ok_or_else(bad)?,
        a.as_i64().ok_or_else(bad)?,
        b.as_i64().ok_or_else(bad)?,
        user,
    ))
}

fn fence_change(tier: TierRef, reply: &[Value]) -> Result<FenceChange, GateError> {
    let (word, quantity, available, user_id) = parse_reply(reply.get(..4).unwrap_or(reply))?;
    let outcome = match word.as_str() {
        "ROLLED_BACK" => FenceOutcome::RolledBack,
        "CONFIRMED" => FenceOutcome::Confirmed,
        "ALREADY_CONFIRMED" => FenceOutcome::AlreadyConfirmed,
        "ALREADY_ROLLED_BACK" => FenceOutcome::AlreadyRolledBack,
        "UNKNOWN_ORDER" => FenceOutcome::UnknownOrder,
        "NOT_LOADED" => return Err(GateError::NotLoaded(tier.tier_id)),
        "UNVERIFIED" => return Err(unverified(tier, user_id)),
        other => return Err(GateError::Protocol(other.to_owned())),
    };
    Ok(FenceChange {
        outcome,
        quantity,
        available,
        user_id,
        stamp: stamp_at(reply, 4)?,
    })
}

/// The stamp a fence-changing script answered with, at position `at` of its reply.
fn stamp_at(reply: &[Value], at: usize) -> Result<String, GateError> {
    reply
        .get(at)
        .and_then(Value::as_string)
        .filter(|stamp| !stamp.is_empty())
        .ok_or_else(|| GateError::Protocol(format!("no stamp in {reply:?}")))
}

fn unverified(tier: TierRef, run_id: String) -> GateError {
    GateError::Unverified {
        tier_id: tier.tier_id,
        run_id,
    }
}

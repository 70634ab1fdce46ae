//! The live stock of each ticket tier in Redis: the fast gate every buyer goes through.
//!
//! One Lua script per operation, each atomic, each idempotent on the order number thanks to a
//! fence per order (`D`educted, `C`onfirmed, `R`olled back) kept next to the counters. Every
//! key of a tier carries the hash tag `{tier:ID}`, so a Redis Cluster keeps them on one shard.
//! Scripts are loaded once and called by SHA; when Redis answers NOSCRIPT (a restart, a
//! failover) they are loaded again and the call is repeated. Invariant of every tier:
//! `available + deducted + confirmed == total`.

use std::sync::Arc;

use fred::prelude::*;
use fred::types::Value;
use ticket_platform::stock_keys;
use tokio::sync::RwLock;

const PREDEDUCT: &str = include_str!("prededuct.lua");
const ROLLBACK: &str = include_str!("rollback.lua");
const CONFIRM: &str = include_str!("confirm.lua");
const LOAD: &str = include_str!("load.lua");

/// What a prededuct answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredeductOutcome {
    Deducted,
    SoldOut,
    LimitReached,
    SaleNotOpen,
    SaleClosed,
    /// The order was rolled back before this prededuct arrived ("hanging"): refused for good.
    AlreadyRolledBack,
}

/// What a rollback or a confirm answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceOutcome {
    RolledBack,
    Confirmed,
    /// A rollback after confirm, refused.
    AlreadyConfirmed,
    /// A confirm after rollback, refused.
    AlreadyRolledBack,
    /// A confirm of an order that was never deducted.
    UnknownOrder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prededucted {
    pub outcome: PredeductOutcome,
    pub available: i64,
    pub unit_price_cents: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceChange {
    pub outcome: FenceOutcome,
    pub quantity: i64,
    pub available: i64,
    /// The buyer the fence belongs to (empty for an empty rollback).
    pub user_id: String,
}

/// The state of one order's fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FenceState {
    Deducted,
    Confirmed,
    RolledBack,
}

impl FenceState {
    /// The one-letter code kept in Redis and in the ledger.
    pub fn code(self) -> &'static str {
        match self {
            Self::Deducted => "D",
            Self::Confirmed => "C",
            Self::RolledBack => "R",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "D" => Some(Self::Deducted),
            "C" => Some(Self::Confirmed),
            "R" => Some(Self::RolledBack),
            _ => None,
        }
    }

    /// The name clients see (`StockChange.fence`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Deducted => "DEDUCTED",
            Self::Confirmed => "CONFIRMED",
            Self::RolledBack => "ROLLED_BACK",
        }
    }
}

/// One order's fence: what Redis keeps next to the counters, and the ledger row it mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub order_no: String,
    pub state: FenceState,
    pub quantity: i64,
    pub user_id: String,
}

impl Fence {
    fn encode(&self) -> String {
        format!("{}:{}:{}", self.state.code(), self.quantity, self.user_id)
    }

    fn decode(order_no: String, value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, ':');
        let state = FenceState::from_code(parts.next()?)?;
        let quantity = parts.next()?.parse().ok()?;
        let user_id = parts.next()?.to_owned();
        Some(Self {
            order_no,
            state,
            quantity,
            user_id,
        })
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

/// What a tier is loaded with: its rules, and (when rebuilt from the ledger) every fence.
/// `deducted`, `confirmed` and the buyers' holdings follow from the fences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierStock {
    pub tier_id: i64,
    pub total: i64,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
    pub per_user_limit: i64,
    pub price_cents: i64,
    pub fences: Vec<Fence>,
}

impl TierStock {
    fn held(&self, state: FenceState) -> i64 {
        self.fences
            .iter()
            .filter(|f| f.state == state)
            .map(|f| f.quantity)
            .sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// Redis does not hold the tier (never loaded, or lost): load it from the ledger first.
    #[error("tier {0} is not loaded in Redis")]
    NotLoaded(i64),
    #[error("unexpected answer from a stock script: {0}")]
    Protocol(String),
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
}

#[derive(Clone, Copy)]
enum Script {
    Prededuct,
    Rollback,
    Confirm,
    Load,
}

impl Script {
    fn sha(self, shas: &Shas) -> String {
        match self {
            Self::Prededuct => shas.prededuct.clone(),
            Self::Rollback => shas.rollback.clone(),
            Self::Confirm => shas.confirm.clone(),
            Self::Load => shas.load.clone(),
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
        let config = Config::from_url(url)?;
        let pool = Builder::from_config(config).build_pool(connections.max(1))?;
        pool.init().await?;
        let gate = Self {
            pool,
            shas: Arc::new(RwLock::new(Shas::default())),
            key_prefix: Arc::from(key_prefix),
        };
        gate.load_scripts().await?;
        Ok(gate)
    }

    /// The keys of one tier (meta, fences, users), all under the hash tag `{tier:ID}`.
    pub fn keys(&self, tier_id: i64) -> Vec<String> {
        let prefix = &self.key_prefix;
        vec![
            stock_keys::meta(prefix, tier_id),
            stock_keys::fences(prefix, tier_id),
            stock_keys::users(prefix, tier_id),
        ]
    }

    /// The SHA the prededuct script is called by (`ticketctl bench stock` calls it raw).
    pub async fn prededuct_sha(&self) -> String {
        self.shas.read().await.prededuct.clone()
    }

    async fn load_scripts(&self) -> Result<(), GateError> {
        let client = self.pool.next();
        let shas = Shas {
            prededuct: client.script_load(PREDEDUCT).await?,
            rollback: client.script_load(ROLLBACK).await?,
            confirm: client.script_load(CONFIRM).await?,
            load: client.script_load(LOAD).await?,
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
        tier_id: i64,
        order_no: &str,
        user_id: &str,
        quantity: i64,
    ) -> Result<Prededucted, GateError> {
        let reply: Vec<Value> = self
            .run(
                Script::Prededuct,
                self.keys(tier_id),
                vec![order_no.into(), user_id.into(), quantity.into()],
            )
            .await?;
        let (word, available, price, _) = parse_reply(&reply)?;
        let outcome = match word.as_str() {
            "DEDUCTED" => PredeductOutcome::Deducted,
            "SOLD_OUT" => PredeductOutcome::SoldOut,
            "LIMIT_REACHED" => PredeductOutcome::LimitReached,
            "SALE_NOT_OPEN" => PredeductOutcome::SaleNotOpen,
            "SALE_CLOSED" => PredeductOutcome::SaleClosed,
            "ALREADY_ROLLED_BACK" => PredeductOutcome::AlreadyRolledBack,
            "NOT_LOADED" => return Err(GateError::NotLoaded(tier_id)),
            other => return Err(GateError::Protocol(other.to_owned())),
        };
        Ok(Prededucted {
            outcome,
            available,
            unit_price_cents: price,
        })
    }

    pub async fn rollback(&self, tier_id: i64, order_no: &str) -> Result<FenceChange, GateError> {
        let reply: Vec<Value> = self
            .run(Script::Rollback, self.keys(tier_id), vec![order_no.into()])
            .await?;
        fence_change(tier_id, &reply)
    }

    pub async fn confirm(&self, tier_id: i64, order_no: &str) -> Result<FenceChange, GateError> {
        let reply: Vec<Value> = self
            .run(Script::Confirm, self.keys(tier_id), vec![order_no.into()])
            .await?;
        fence_change(tier_id, &reply)
    }

    /// Puts a tier into Redis, fences included, unless it is there already (never twice);
    /// `true` when this call loaded it. `available = total - deducted - confirmed`.
    pub async fn load(&self, stock: &TierStock) -> Result<bool, GateError> {
        let deducted = stock.held(FenceState::Deducted);
        let confirmed = stock.held(FenceState::Confirmed);
        let available = stock.total - deducted - confirmed;
        if available < 0 {
            return Err(GateError::Protocol(format!(
                "tier {} holds {} tickets in its fences, above its total {}",
                stock.tier_id,
                deducted + confirmed,
                stock.total
            )));
        }
        let mut args: Vec<Value> = [
            stock.total,
            available,
            deducted,
            confirmed,
            stock.opens_at_ms,
            stock.closes_at_ms,
            stock.per_user_limit,
            stock.price_cents,
        ]
        .into_iter()
        .map(Value::from)
        .collect();
        for fence in &stock.fences {
            args.push(fence.order_no.as_str().into());
            args.push(fence.encode().into());
        }
        let loaded: i64 = self
            .run(Script::Load, self.keys(stock.tier_id), args)
            .await?;
        Ok(loaded == 1)
    }

    /// The tier's counters, or `None` when Redis does not hold it.
    pub async fn counters(&self, tier_id: i64) -> Result<Option<TierCounters>, GateError> {
        let fields: Vec<Option<i64>> = self
            .pool
            .next()
            .hmget(
                self.keys(tier_id)[0].clone(),
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
    pub async fn fences(&self, tier_id: i64) -> Result<Vec<Fence>, GateError> {
        let raw: std::collections::HashMap<String, String> = self
            .pool
            .next()
            .hgetall(self.keys(tier_id)[1].clone())
            .await?;
        raw.into_iter()
            .map(|(order_no, value)| {
                Fence::decode(order_no, &value)
                    .ok_or_else(|| GateError::Protocol(format!("fence {value:?}")))
            })
            .collect()
    }

    /// Whether the tier's sold-out flag is set (order-svc refuses at once when it is).
    pub async fn is_sold_out(&self, tier_id: i64) -> Result<bool, GateError> {
        let flag: Option<i64> = self
            .pool
            .next()
            .hget(self.keys(tier_id)[0].clone(), "sold_out")
            .await?;
        Ok(flag == Some(1))
    }

    /// Forgets a tier (tests of reloading, and operators retiring a tier).
    pub async fn forget(&self, tier_id: i64) -> Result<(), GateError> {
        let _: i64 = self.pool.next().del(self.keys(tier_id)).await?;
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

fn fence_change(tier_id: i64, reply: &[Value]) -> Result<FenceChange, GateError> {
    let (word, quantity, available, user_id) = parse_reply(reply)?;
    let outcome = match word.as_str() {
        "ROLLED_BACK" => FenceOutcome::RolledBack,
        "CONFIRMED" => FenceOutcome::Confirmed,
        "ALREADY_CONFIRMED" => FenceOutcome::AlreadyConfirmed,
        "ALREADY_ROLLED_BACK" => FenceOutcome::AlreadyRolledBack,
        "UNKNOWN_ORDER" => FenceOutcome::UnknownOrder,
        "NOT_LOADED" => return Err(GateError::NotLoaded(tier_id)),
        other => return Err(GateError::Protocol(other.to_owned())),
    };
    Ok(FenceChange {
        outcome,
        quantity,
        available,
        user_id,
    })
}

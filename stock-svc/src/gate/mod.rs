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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FenceChange {
    pub outcome: FenceOutcome,
    pub quantity: i64,
    pub available: i64,
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

/// What a tier is loaded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierStock {
    pub tier_id: i64,
    pub total: i64,
    pub deducted: i64,
    pub confirmed: i64,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
    pub per_user_limit: i64,
    pub price_cents: i64,
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

/// The keys of one tier, all under one hash tag.
fn keys(tier_id: i64) -> Vec<String> {
    vec![
        format!("stock:{{tier:{tier_id}}}:meta"),
        format!("stock:{{tier:{tier_id}}}:fences"),
        format!("stock:{{tier:{tier_id}}}:users"),
    ]
}

/// The stock scripts, loaded on a Redis connection pool.
#[derive(Clone)]
pub struct StockGate {
    pool: Pool,
    shas: Arc<RwLock<Shas>>,
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
    /// Connects a pool of `connections` to `url` and loads the scripts.
    pub async fn connect(url: &str, connections: usize) -> Result<Self, GateError> {
        let config = Config::from_url(url)?;
        let pool = Builder::from_config(config).build_pool(connections.max(1))?;
        pool.init().await?;
        let gate = Self {
            pool,
            shas: Arc::new(RwLock::new(Shas::default())),
        };
        gate.load_scripts().await?;
        Ok(gate)
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
                keys(tier_id),
                vec![order_no.into(), user_id.into(), quantity.into()],
            )
            .await?;
        let (word, available, price) = triple(&reply)?;
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
            .run(Script::Rollback, keys(tier_id), vec![order_no.into()])
            .await?;
        fence_change(tier_id, &reply)
    }

    pub async fn confirm(&self, tier_id: i64, order_no: &str) -> Result<FenceChange, GateError> {
        let reply: Vec<Value> = self
            .run(Script::Confirm, keys(tier_id), vec![order_no.into()])
            .await?;
        fence_change(tier_id, &reply)
    }

    /// Puts a tier into Redis unless it is there already; `true` when this call loaded it.
    pub async fn load(&self, stock: &TierStock) -> Result<bool, GateError> {
        let available = stock.total - stock.deducted - stock.confirmed;
        let args: Vec<Value> = [
            stock.total,
            available,
            stock.deducted,
            stock.confirmed,
            stock.opens_at_ms,
            stock.closes_at_ms,
            stock.per_user_limit,
            stock.price_cents,
        ]
        .into_iter()
        .map(Value::from)
        .collect();
        let loaded: i64 = self.run(Script::Load, keys(stock.tier_id), args).await?;
        Ok(loaded == 1)
    }

    /// The tier's counters, or `None` when Redis does not hold it.
    pub async fn counters(&self, tier_id: i64) -> Result<Option<TierCounters>, GateError> {
        let fields: Vec<Option<i64>> = self
            .pool
            .next()
            .hmget(
                keys(tier_id)[0].clone(),
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

    /// Whether the tier's sold-out flag is set (order-svc refuses at once when it is).
    pub async fn is_sold_out(&self, tier_id: i64) -> Result<bool, GateError> {
        let flag: Option<i64> = self
            .pool
            .next()
            .hget(keys(tier_id)[0].clone(), "sold_out")
            .await?;
        Ok(flag == Some(1))
    }

    /// Forgets a tier (tests of reloading, and operators retiring a tier).
    pub async fn forget(&self, tier_id: i64) -> Result<(), GateError> {
        let _: i64 = self.pool.next().del(keys(tier_id)).await?;
        Ok(())
    }

    /// The underlying pool, for callers that need a plain Redis command.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

fn triple(reply: &[Value]) -> Result<(String, i64, i64), GateError> {
    match reply {
        [word, a, b] => {
            let word = word
                .as_string()
                .ok_or_else(|| GateError::Protocol(format!("{reply:?}")))?;
            let a = a
                .as_i64()
                .ok_or_else(|| GateError::Protocol(format!("{reply:?}")))?;
            let b = b
                .as_i64()
                .ok_or_else(|| GateError::Protocol(format!("{reply:?}")))?;
            Ok((word, a, b))
        }
        _ => Err(GateError::Protocol(format!("{reply:?}"))),
    }
}

fn fence_change(tier_id: i64, reply: &[Value]) -> Result<FenceChange, GateError> {
    let (word, quantity, available) = triple(reply)?;
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
    })
}

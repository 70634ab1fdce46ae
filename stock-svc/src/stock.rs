//! The one idempotent handler behind all three doors (`StockService`, `Participant.Execute`
//! and the `STOCK_TOPIC` consumer): run the tier's script in Redis, then record the fence
//! change in the Postgres ledger before anyone hears the answer.
//!
//! A command that arrives again replays its script (same answer, nothing changed twice) and
//! completes a record that a crash may have left unwritten. When Redis lost a tier (or its
//! session's buyers' holdings), the session is rebuilt from the ledger (fences included, see
//! [`crate::rebuild`]) before the script runs again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::error::Error;
use crate::gate::{
    Fence, FenceChange, FenceOutcome, FenceState, GateError, PredeductOutcome, Prededucted,
    StockGate, TierCounters,
};
use crate::ledger::{self, LedgerEntry, LedgerWriter, Recorded};
use crate::rebuild::load_session;
use crate::tiers::{TierRules, Tiers};
use crate::verify::SessionChecks;

/// Times a script is run again after its tier was rebuilt or checked against the ledger.
const GATE_ATTEMPTS: usize = 3;

/// Longest accepted order number and user id.
pub const MAX_ID_LEN: usize = 64;

/// What to do to a tier's stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StockStep {
    Prededuct {
        tier_id: i64,
        user_id: String,
        quantity: i64,
    },
    Confirm {
        tier_id: i64,
    },
    Rollback {
        tier_id: i64,
    },
    /// Write the tier's Redis counters to Postgres.
    Sync {
        tier_id: i64,
    },
}

impl StockStep {
    pub fn tier_id(&self) -> i64 {
        match self {
            Self::Prededuct { tier_id, .. }
            | Self::Confirm { tier_id }
            | Self::Rollback { tier_id }
            | Self::Sync { tier_id } => *tier_id,
        }
    }
}

/// A checked request: every field has the shape the scripts need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockRequest {
    /// Empty only for `Sync`, which concerns a tier, not an order.
    pub order_no: String,
    pub step: StockStep,
}

fn identifier(field: &str, value: &str) -> Result<String, Error> {
    ticket_platform::fields::identifier(field, value, MAX_ID_LEN).map_err(Error::Invalid)
}

impl StockRequest {
    /// Checks the fields; what fails is `INVALID_ARGUMENT` and nothing is touched.
    pub fn new(order_no: &str, step: StockStep) -> Result<Self, Error> {
        let tier_id = step.tier_id();
        if tier_id <= 0 {
            return Err(Error::Invalid(format!(
                "tier_id must be a positive id, got {tier_id}"
            )));
        }
        let order_no = match step {
            StockStep::Sync { .. } if order_no.is_empty() => String::new(),
            _ => identifier("order_no", order_no)?,
        };
        if let StockStep::Prededuct {
            user_id, quantity, ..
        } = &step
        {
            identifier("user_id", user_id)?;
            if *quantity <= 0 {
                return Err(Error::Invalid(format!(
                    "quantity must be at least 1, got {quantity}"
                )));
            }
        }
        Ok(Self { order_no, step })
    }
}

/// What a step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Prededucted(Prededucted),
    Changed(FenceChange),
    Synced(TierCounters),
}

/// Where a fence change is recorded: in the caller's transaction (the consumer's, which also
/// holds the inbox row and the outbox reply), or through the group-commit writer.
pub enum Record<'a, C: ConnectionTrait> {
    In(&'a C),
    Writer,
}

/// The stock of every tier: Redis gate, tier rules, ledger.
#[derive(Clone)]
pub struct Stock {
    pub db: DatabaseConnection,
    /// A small pool of its own for what a step reads besides its own transaction (tier rules,
    /// the ledger to check or rebuild Redis from). A command over RocketMQ holds a connection
    /// of `db` for its transaction while its script runs: were the check to need one of `db`
    /// too, a burst of commands after a Redis restart would hold every connection and wait,
    /// each for one more.
    pub record: DatabaseConnection,
    pub gate: StockGate,
    pub tiers: Tiers,
    writer: LedgerWriter,
    /// One check against the ledger per session at a time, after Redis started anew.
    pub(crate) checks: SessionChecks,
    /// The last stamp the ledger refused, per tier ([`Stock::refused`]).
    refused_stamps: Arc<Mutex<HashMap<i64, String>>>,
    pub metrics: crate::metrics::StockMetrics,
}

impl Stock {
    /// `record` is the pool for reads besides a step's transaction ([`Stock::record`]).
    pub fn new(
        db: DatabaseConnection,
        record: DatabaseConnection,
        gate: StockGate,
        ledger_writers: usize,
    ) -> Self {
        let metrics = crate::metrics::StockMetrics::default();
        Self {
            tiers: Tiers::new(record.clone()),
            writer: LedgerWriter::spawn(db.clone(), ledger_writers, metrics.ledger_commits.clone()),
            checks: SessionChecks::default(),
            refused_stamps: Arc::default(),
            metrics,
            db,
            record,
            gate,
        }
    }

    /// Runs one step: the script, then its record. Idempotent on the order number. A record
    /// refused because the tier was loaded or checked since the script ran ([`crate::ledger`])
    /// is [`Error::CheckedMeanwhile`] in a caller's transaction, which may hold the tier's lock
    /// until it ends (the command runs again in a new one); through the writer, whose
    /// transaction has ended, the script runs again at once.
    #[tracing::instrument(skip_all, fields(order_no = %request.order_no, tier_id = request.step.tier_id()))]
    pub async fn execute<C: ConnectionTrait>(
        &self,
        request: &StockRequest,
        record: Record<'_, C>,
    ) -> Result<Effect, Error> {
        let rules = self.tiers.get(request.step.tier_id()).await?;
        for _ in 0..GATE_ATTEMPTS {
            let (effect, entry) = self.apply_to(request, &rules).await?;
            if let Effect::Synced(counters) = &effect {
                match &record {
                    Record::In(conn) => ledger::sync(*conn, rules.tier_id, counters).await?,
                    Record::Writer => ledger::sync(&self.db, rules.tier_id, counters).await?,
                }
            }
            let Some(entry) = entry else {
                return Ok(effect);
            };
            let taken = match &record {
                Record::In(conn) => ledger::record(*conn, std::slice::from_ref(&entry))
                    .await?
                    .is_empty(),
                Record::Writer => self.writer.write(entry.clone()).await? == Recorded::Taken,
            };
            if taken {
                return Ok(effect);
            }
            self.refused(&entry);
            if matches!(record, Record::In(_)) {
                break;
            }
        }
        Err(Error::CheckedMeanwhile(format!(
            "tier {} was checked against the ledger while order {}'s change was recorded; retry",
            rules.tier_id, request.order_no
        )))
    }

    /// Remembers that the ledger refused `entry`'s stamp: when a script of its tier answers
    /// with it again, Redis and Postgres disagree on the tier's last check (its stamp reached
    /// Redis, not Postgres), and the session is checked again before anything is recorded.
    pub(crate) fn refused(&self, entry: &LedgerEntry) {
        tracing::info!(
            order_no = %entry.fence.order_no,
            tier_id = entry.tier_id,
            "the tier was checked against the ledger since the script ran; it runs again"
        );
        self.refused_stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(entry.tier_id, entry.stamp.clone());
    }

    /// Whether the ledger refused `stamp` of `tier_id` before.
    fn was_refused(&self, tier_id: i64, stamp: &str) -> bool {
        self.refused_stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&tier_id)
            .is_some_and(|refused| refused == stamp)
    }

    /// A step's script (after a rebuild or a check of the session when Redis needs one), not
    /// recorded: the fence change to record, when it made one, goes with what it did.
    pub async fn apply(
        &self,
        request: &StockRequest,
    ) -> Result<(Effect, Option<LedgerEntry>), Error> {
        let rules = self.tiers.get(request.step.tier_id()).await?;
        self.apply_to(request, &rules).await
    }

    async fn apply_to(
        &self,
        request: &StockRequest,
        rules: &TierRules,
    ) -> Result<(Effect, Option<LedgerEntry>), Error> {
        let (effect, entry) = self.script(request, rules).await?;
        match entry {
            Some(entry) if self.was_refused(rules.tier_id, &entry.stamp) => {
                let run_id = self.gate.run_id().await?;
                self.verify_session(rules, &run_id, Some(&entry.stamp))
                    .await?;
                self.script(request, rules).await
            }
            entry => Ok((effect, entry)),
        }
    }

    async fn script(
        &self,
        request: &StockRequest,
        rules: &TierRules,
    ) -> Result<(Effect, Option<LedgerEntry>), Error> {
        let tier_id = rules.tier_id;
        let tier = rules.tier_ref();
        let order_no = request.order_no.as_str();
        let entry = |fence: Fence, stamp: &str| LedgerEntry {
            tier_id,
            fence,
            stamp: stamp.to_owned(),
        };
        Ok(match &request.step {
            StockStep::Prededuct {
                user_id, quantity, ..
            } => {
                if *quantity > rules.buyer_limit() {
                    return Err(Error::Invalid(format!(
                        "quantity {quantity} is above the limit of {} tickets per buyer of tier \
                         {tier_id}",
                        rules.buyer_limit()
                    )));
                }
                let answer = self
                    .gated(rules, || {
                        self.gate.prededuct(tier, order_no, user_id, *quantity)
                    })
                    .await?;
                self.metrics.prededucted(answer.outcome);
                self.metrics.left(tier_id, answer.available);
                let fence = (answer.outcome == PredeductOutcome::Deducted).then(|| {
                    let fence = Fence {
                        order_no: order_no.to_owned(),
                        state: FenceState::Deducted,
                        quantity: *quantity,
                        user_id: user_id.clone(),
                    };
                    entry(fence, &answer.stamp)
                });
                (Effect::Prededucted(answer), fence)
            }
            StockStep::Confirm { .. } => {
                let change = self
                    .gated(rules, || self.gate.confirm(tier, order_no))
                    .await?;
                self.metrics.left(tier_id, change.available);
                let fence = (change.outcome == FenceOutcome::Confirmed).then(|| {
                    entry(
                        fence_of(order_no, FenceState::Confirmed, &change),
                        &change.stamp,
                    )
                });
                (Effect::Changed(change), fence)
            }
            StockStep::Rollback { .. } => {
                let change = self
                    .gated(rules, || self.gate.rollback(tier, order_no))
                    .await?;
                self.metrics.left(tier_id, change.available);
                let fence = (change.outcome == FenceOutcome::RolledBack).then(|| {
                    entry(
                        fence_of(order_no, FenceState::RolledBack, &change),
                        &change.stamp,
                    )
                });
                (Effect::Changed(change), fence)
            }
            StockStep::Sync { .. } => (Effect::Synced(self.counters(rules).await?), None),
        })
    }

    /// Runs a script; when Redis does not hold the tier or its session's holdings, rebuilds
    /// the session from the ledger, and when Redis started anew since the tier was checked,
    /// checks the session against the ledger ([`Stock::verify_session`]); then runs the
    /// script again (a few times at most: a check can drop a tier, which is then rebuilt).
    async fn gated<T, F, Fut>(&self, rules: &TierRules, script: F) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GateError>>,
    {
        for _ in 0..GATE_ATTEMPTS {
            match script().await {
                Err(GateError::NotLoaded(_)) => {
                    self.rebuild(rules).await?;
                }
                Err(GateError::Unverified { run_id, .. }) => {
                    self.verify_session(rules, &run_id, None).await?;
                }
                other => return Ok(other?),
            }
        }
        Ok(script().await?)
    }

    /// Loads the tier's session into Redis from the ledger: every tier of it Redis does not
    /// hold (`available = total - deducted - confirmed`, fences included), and the buyers'
    /// holdings across the session computed afresh. Never twice: returns the tiers this call
    /// loaded, none when Redis held them all already.
    pub async fn rebuild(&self, rules: &TierRules) -> Result<Vec<i64>, Error> {
        // The session's tiers stay locked until the load is recorded (`load_session`).
        let txn = self.record.begin().await?;
        let loaded = load_session(&txn, &self.gate, rules.session_id).await?;
        txn.commit().await?;
        if !loaded.is_empty() {
            tracing::warn!(
                session_id = rules.session_id,
                tiers = ?loaded,
                "Redis did not hold the session's live stock; rebuilt it from the ledger"
            );
        }
        Ok(loaded)
    }

    /// The tier's live counters, rebuilding it first when Redis lost it.
    pub async fn counters(&self, rules: &TierRules) -> Result<TierCounters, Error> {
        if let Some(counters) = self.gate.counters(rules.tier_ref()).await? {
            return Ok(counters);
        }
        self.rebuild(rules).await?;
        self.gate
            .counters(rules.tier_ref())
            .await?
            .ok_or(Error::Gate(GateError::NotLoaded(rules.tier_id)))
    }
}

fn fence_of(order_no: &str, state: FenceState, change: &FenceChange) -> Fence {
    Fence {
        order_no: order_no.to_owned(),
        state,
        quantity: change.quantity,
        user_id: change.user_id.clone(),
    }
}

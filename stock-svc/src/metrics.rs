//! What stock-svc counts (on its admin port's `/metrics`): prededucts by outcome (a repeated
//! prededuct of an order is answered, and counted, again), the tickets each tier has left as
//! its last prededuct, confirm or rollback saw them, and drift that persisted between Redis
//! and the ledger, and how many entries each group commit of the gRPC doors' ledger writer
//! took (the RocketMQ door's are `participant_batch_commands`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use ticket_platform::metrics::Metrics;

use crate::gate::PredeductOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier_id: i64,
}

#[derive(Clone, Debug)]
pub struct StockMetrics {
    pub prededucts: Family<OutcomeLabel, Counter>,
    /// Tickets available per tier, as the last script on it answered.
    pub available: Family<TierLabel, Gauge>,
    /// Each tier, on each drift check, whose drift persisted since the check before.
    pub drift_found: Counter,
    /// Entries per commit of the gRPC doors' ledger writer.
    pub ledger_commits: Histogram,
}

impl Default for StockMetrics {
    fn default() -> Self {
        Self {
            prededucts: Family::default(),
            available: Family::default(),
            drift_found: Counter::default(),
            ledger_commits: ticket_platform::metrics::sizes(),
        }
    }
}

impl StockMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "stock_prededucts",
            "Prededucts answered, by outcome (DEDUCTED, SOLD_OUT, LIMIT_REACHED, ...)",
            self.prededucts.clone(),
        );
        metrics.register(
            "stock_available_tickets",
            "Tickets a tier has left, as the last prededuct, confirm or rollback on it answered",
            self.available.clone(),
        );
        metrics.register(
            "stock_drift_found",
            "Drift checks that found a tier's Redis and ledger still disagreeing as on the check \
             before (one per tier per check)",
            self.drift_found.clone(),
        );
        metrics.register(
            "stock_ledger_commit_entries",
            "Ledger entries the gRPC doors' writer committed together (its group commit's size)",
            self.ledger_commits.clone(),
        );
    }

    pub fn left(&self, tier_id: i64, available: i64) {
        self.available
            .get_or_create(&TierLabel { tier_id })
            .set(available);
    }

    pub fn prededucted(&self, outcome: PredeductOutcome) {
        let outcome = match outcome {
            PredeductOutcome::Deducted => "DEDUCTED",
            PredeductOutcome::SoldOut => "SOLD_OUT",
            PredeductOutcome::LimitReached => "LIMIT_REACHED",
            PredeductOutcome::SaleNotOpen => "SALE_NOT_OPEN",
            PredeductOutcome::SaleClosed => "SALE_CLOSED",
            PredeductOutcome::AlreadyRolledBack => "ALREADY_ROLLED_BACK",
        };
        self.prededucts
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

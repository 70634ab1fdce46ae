//! What stock-svc counts (on its admin port's `/metrics`): prededucts by outcome. A repeated
//! prededuct of an order is answered, and counted, again.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use ticket_platform::metrics::Metrics;

use crate::gate::PredeductOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct StockMetrics {
    pub prededucts: Family<OutcomeLabel, Counter>,
}

impl StockMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "stock_prededucts",
            "Prededucts answered, by outcome (DEDUCTED, SOLD_OUT, LIMIT_REACHED, ...)",
            self.prededucts.clone(),
        );
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

//! What order-svc counts (on its admin port's `/metrics`): orders created, refused at once and
//! why, paid, and cancelled by reason. A change is counted by the call that made it, not by a
//! repeated request answered the same way.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use ticket_platform::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct OrderMetrics {
    pub created: Counter,
    /// CreateOrder refused before any order was written: `sold_out`, `invalid` (bad input),
    /// `exists` (a request id used for another order).
    pub refused: Family<ReasonLabel, Counter>,
    pub paid: Counter,
    /// Orders cancelled, by cancel reason (`USER_CANCELLED`, `PAYMENT_EXPIRED`, ...).
    pub cancelled: Family<ReasonLabel, Counter>,
}

impl OrderMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register("orders_created", "Orders created", self.created.clone());
        metrics.register(
            "orders_refused",
            "CreateOrder calls refused before an order was written, by reason",
            self.refused.clone(),
        );
        metrics.register("orders_paid", "Orders paid", self.paid.clone());
        metrics.register(
            "orders_cancelled",
            "Orders cancelled, by cancel reason",
            self.cancelled.clone(),
        );
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn cancelled(&self, reason: crate::orders::CancelReason) {
        self.cancelled
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }
}

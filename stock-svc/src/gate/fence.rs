//! An order's fence: what the stock scripts keep next to a tier's counters (order number ->
//! `D|C|R:quantity:user`) and the ledger row it mirrors, and what a script answers about it.

/// What a prededuct answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredeductOutcome {
    Deducted,
    SoldOut,
    /// The buyer would hold more than the session's per-buyer limit across its tiers, or more
    /// than the tier's own cap in this tier.
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prededucted {
    pub outcome: PredeductOutcome,
    pub available: i64,
    pub unit_price_cents: i64,
    /// The tier's last check against the ledger when the script ran: its record in the ledger
    /// names it, and is refused when the tier was checked again since.
    pub stamp: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceChange {
    pub outcome: FenceOutcome,
    pub quantity: i64,
    pub available: i64,
    /// The buyer the fence belongs to (empty for an empty rollback).
    pub user_id: String,
    /// As [`Prededucted::stamp`].
    pub stamp: String,
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
    pub(super) fn encode(&self) -> String {
        format!("{}:{}:{}", self.state.code(), self.quantity, self.user_id)
    }

    pub(super) fn decode(order_no: String, value: &str) -> Option<Self> {
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

#[cfg(test)]
mod tests {
    use super::{Fence, FenceState};

    #[test]
    fn a_fence_reads_back_as_written() {
        let fence = Fence {
            order_no: "T1".into(),
            state: FenceState::Confirmed,
            quantity: 3,
            user_id: "u:1".into(),
        };
        assert_eq!(
            Fence::decode("T1".into(), &fence.encode()),
            Some(fence.clone())
        );
        assert_eq!(Fence::decode("T1".into(), "X:1:u"), None);
    }
}

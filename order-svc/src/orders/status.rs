//! An order's status and cancel reason, as stored (text) and as clients see them (enums).

use ticket_proto::order::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    AwaitingPayment,
    Paid,
    Confirmed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::Paid => "PAID",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::AwaitingPayment,
            Self::Paid,
            Self::Confirmed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// No change follows a final state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }

    pub fn proto(self) -> pb::OrderStatus {
        match self {
            Self::Pending => pb::OrderStatus::Pending,
            Self::AwaitingPayment => pb::OrderStatus::AwaitingPayment,
            Self::Paid => pb::OrderStatus::Paid,
            Self::Confirmed => pb::OrderStatus::Confirmed,
            Self::Cancelled => pb::OrderStatus::Cancelled,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    SoldOut,
    LimitReached,
    UserCancelled,
    PaymentExpired,
    System,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "SOLD_OUT",
            Self::LimitReached => "LIMIT_REACHED",
            Self::UserCancelled => "USER_CANCELLED",
            Self::PaymentExpired => "PAYMENT_EXPIRED",
            Self::System => "SYSTEM",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::SoldOut,
            Self::LimitReached,
            Self::UserCancelled,
            Self::PaymentExpired,
            Self::System,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }

    pub fn proto(self) -> pb::CancelReason {
        match self {
            Self::SoldOut => pb::CancelReason::SoldOut,
            Self::LimitReached => pb::CancelReason::LimitReached,
            Self::UserCancelled => pb::CancelReason::UserCancelled,
            Self::PaymentExpired => pb::CancelReason::PaymentExpired,
            Self::System => pb::CancelReason::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for s in [
            Status::Pending,
            Status::AwaitingPayment,
            Status::Paid,
            Status::Confirmed,
            Status::Cancelled,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in [
            CancelReason::SoldOut,
            CancelReason::LimitReached,
            CancelReason::UserCancelled,
            CancelReason::PaymentExpired,
            CancelReason::System,
        ] {
            assert_eq!(CancelReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Status::parse("paid"), None);
        assert!(Status::Cancelled.is_final() && !Status::Paid.is_final());
    }
}

//! A saga type declared as data: its ordered forward steps (each with the participant that runs
//! it, its compensation if any, its timeout and retry policy), the pivot after which steps only
//! retry, and the step that undoes the saga's start. The engine reads this; it does not know
//! the purchase saga by heart.

use std::time::Duration;

use ticket_platform::messaging::{tag, topic};

/// Who runs a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Participant {
    Stock,
    Order,
    Notify,
}

impl Participant {
    /// The topic its commands travel on.
    pub fn topic(self) -> &'static str {
        match self {
            Self::Stock => topic::STOCK,
            Self::Order => topic::ORDER_CMD,
            Self::Notify => topic::NOTIFICATION,
        }
    }
}

/// How a step is retried when it times out or fails for a passing reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before attempt 2; doubled for each later attempt, capped at `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before `attempt` (2, 3, ...).
    pub fn backoff_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// A command to a participant, answered by a reply (the step's name is its tag).
    Command(Participant),
    /// Waiting for an event (payment) or a deadline; no command.
    Wait,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpec {
    pub name: &'static str,
    pub kind: StepKind,
    /// The step that undoes this one when the saga compensates.
    pub compensation: Option<&'static str>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaDefinition {
    pub name: &'static str,
    /// Forward steps, in order.
    pub forward: Vec<StepSpec>,
    /// Compensation steps (run in reverse order of the steps they undo).
    pub compensations: Vec<StepSpec>,
    /// The step after which the saga only goes forward (retry, then park).
    pub pivot: &'static str,
    /// The compensation that undoes the saga's start (cancelling the order); always last.
    pub abort: &'static str,
    /// Notifications sent when the saga completes; their failure never undoes it.
    pub notifications: Vec<&'static str>,
}

/// Durations the purchase saga is built with (configurable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SagaSettings {
    pub step_timeout: Duration,
    pub retry: RetryPolicy,
    pub payment_window: Duration,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 5,
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
            },
            payment_window: Duration::from_secs(15 * 60),
        }
    }
}

pub const STOCK_DEDUCT: &str = tag::STOCK_DEDUCT;
pub const ORDER_RESERVE: &str = tag::ORDER_RESERVE;
pub const AWAIT_PAYMENT: &str = "AWAIT_PAYMENT";
pub const STOCK_CONFIRM: &str = tag::STOCK_CONFIRM;
pub const ORDER_CONFIRM: &str = tag::ORDER_CONFIRM;
pub const STOCK_ROLLBACK: &str = tag::STOCK_ROLLBACK;
pub const ORDER_CANCEL: &str = tag::ORDER_CANCEL;
pub const PURCHASE: &str = "PURCHASE";

impl SagaDefinition {
    /// `ORDER_CREATED` → `STOCK_DEDUCT` → `ORDER_RESERVE` → wait for payment (the pivot) →
    /// `STOCK_CONFIRM` → `ORDER_CONFIRM` → SMS, e-mail, push. Compensations: `STOCK_ROLLBACK`
    /// undoes the deduct, `ORDER_CANCEL` the order.
    pub fn purchase(settings: &SagaSettings) -> Self {
        let command = |name, participant, compensation| StepSpec {
            name,
            kind: StepKind::Command(participant),
            compensation,
            timeout: settings.step_timeout,
            retry: settings.retry,
        };
        Self {
            name: PURCHASE,
            forward: vec![
                command(STOCK_DEDUCT, Participant::Stock, Some(STOCK_ROLLBACK)),
                command(ORDER_RESERVE, Participant::Order, None),
                StepSpec {
                    name: AWAIT_PAYMENT,
                    kind: StepKind::Wait,
                    compensation: None,
                    timeout: settings.payment_window,
                    retry: settings.retry,
                },
                command(STOCK_CONFIRM, Participant::Stock, None),
                command(ORDER_CONFIRM, Participant::Order, None),
            ],
            compensations: vec![
                command(STOCK_ROLLBACK, Participant::Stock, None),
                command(ORDER_CANCEL, Participant::Order, None),
            ],
            pivot: AWAIT_PAYMENT,
            abort: ORDER_CANCEL,
            notifications: vec![tag::SMS, tag::EMAIL, tag::PUSH],
        }
    }

    pub fn step(&self, name: &str) -> Option<&StepSpec> {
        self.forward
            .iter()
            .chain(&self.compensations)
            .find(|s| s.name == name)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.forward.iter().position(|s| s.name == name)
    }

    /// Whether `name` is a forward step after the pivot (it only retries).
    pub fn after_pivot(&self, name: &str) -> bool {
        match (self.position(name), self.position(self.pivot)) {
            (Some(step), Some(pivot)) => step > pivot,
            _ => false,
        }
    }

    pub fn is_compensation(&self, name: &str) -> bool {
        self.compensations.iter().any(|s| s.name == name)
    }

    /// The forward step after `name`.
    pub fn next(&self, name: &str) -> Option<&StepSpec> {
        self.position(name).and_then(|i| self.forward.get(i + 1))
    }

    /// What undoes the saga when it stops at forward step `at`: the compensations of the steps
    /// before it (and of `at` itself when its effect may have happened), newest first, then
    /// the abort step.
    pub fn compensation_plan(&self, at: &str, include_at: bool) -> Vec<&'static str> {
        let end = self
            .position(at)
            .map_or(0, |i| if include_at { i + 1 } else { i });
        let mut plan: Vec<&'static str> = self.forward[..end]
            .iter()
            .rev()
            .filter_map(|s| s.compensation)
            .collect();
        plan.push(self.abort);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase() -> SagaDefinition {
        SagaDefinition::purchase(&SagaSettings::default())
    }

    #[test]
    fn a_refused_deduct_only_cancels_the_order() {
        assert_eq!(
            purchase().compensation_plan(STOCK_DEDUCT, false),
            vec![ORDER_CANCEL]
        );
    }

    #[test]
    fn a_deduct_of_unknown_outcome_is_rolled_back_too() {
        assert_eq!(
            purchase().compensation_plan(STOCK_DEDUCT, true),
            vec![STOCK_ROLLBACK, ORDER_CANCEL]
        );
    }

    #[test]
    fn a_cancel_while_awaiting_payment_returns_stock_then_cancels() {
        assert_eq!(
            purchase().compensation_plan(AWAIT_PAYMENT, false),
            vec![STOCK_ROLLBACK, ORDER_CANCEL]
        );
    }

    #[test]
    fn steps_after_the_pivot_only_retry() {
        let saga = purchase();
        assert!(!saga.after_pivot(STOCK_DEDUCT));
        assert!(!saga.after_pivot(AWAIT_PAYMENT));
        assert!(saga.after_pivot(STOCK_CONFIRM));
        assert!(saga.after_pivot(ORDER_CONFIRM));
        assert_eq!(
            saga.next(ORDER_RESERVE).map(|s| s.name),
            Some(AWAIT_PAYMENT)
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let retry = RetryPolicy {
            max_attempts: 8,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(retry.backoff_before(2), Duration::from_millis(100));
        assert_eq!(retry.backoff_before(3), Duration::from_millis(200));
        assert_eq!(retry.backoff_before(4), Duration::from_millis(400));
        assert_eq!(retry.backoff_before(5), Duration::from_millis(500));
    }
}

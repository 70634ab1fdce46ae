//! The closed sets of the saga log: where a saga is, what a timer is for, and the business
//! signals a saga hears. Each is stored by name and checked by its table.

/// Where a saga is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Going forward, waiting for the reply of the current step.
    Running,
    /// At a wait step: waiting for a signal or the deadline.
    Waiting,
    /// Undoing, waiting for the reply of the current compensation.
    Compensating,
    Completed,
    Compensated,
    /// Stopped for an operator: a step after the pivot spent its retries, or a step was
    /// refused where the saga has no rule for it.
    Parked,
}

impl State {
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Waiting,
        Self::Compensating,
        Self::Completed,
        Self::Compensated,
        Self::Parked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Waiting => "WAITING",
            Self::Compensating => "COMPENSATING",
            Self::Completed => "COMPLETED",
            Self::Compensated => "COMPENSATED",
            Self::Parked => "PARKED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated)
    }

    /// Waiting for a reply of its current step.
    pub fn awaits_reply(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

/// What a durable timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// The current attempt of a step was not answered in time.
    StepTimeout,
    /// The next attempt of a step is due.
    Retry,
    /// A wait step's deadline (plus its margin) passed.
    Deadline,
}

impl TimerKind {
    pub const ALL: [Self; 3] = [Self::StepTimeout, Self::Retry, Self::Deadline];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StepTimeout => "STEP_TIMEOUT",
            Self::Retry => "RETRY",
            Self::Deadline => "DEADLINE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A signal from outside the saga's commands (an event of the business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// What the pivot waits for happened (the order was paid).
    PivotPassed,
    /// The saga should be undone (the buyer cancelled).
    Abort,
}

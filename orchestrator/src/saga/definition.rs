//! What a saga type declares and the engine reads: its steps in order (each with the
//! participant that runs it or the wait it stands for, its compensation, timeout, retry policy
//! and whether an operator may skip it), the pivot after which it only goes forward, the abort
//! step that opens every compensation, and the commands sent once it completes or once it ends
//! compensated. A saga type
//! adds its reply rules and command builders through [`SagaType`]; the engine knows no saga by
//! heart.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use ticket_platform::messaging::topic;
use ticket_proto::saga::v1::Reply;
use ticket_proto::saga::v1::command::Body;

/// A saga type's step names: a closed set, stored by name.
pub trait StepName: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// Every step, for checks and parsing.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == text)
    }
}

/// Who runs a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Participant {
    Stock,
    Order,
    Notify,
}

impl Participant {
    pub const ALL: [Self; 3] = [Self::Stock, Self::Order, Self::Notify];

    /// Who takes the commands of `topic` (without namespace).
    pub fn of_topic(topic: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.topic() == topic)
    }

    /// The service that answers for it (in the metrics of the calls made to it).
    pub fn service(self) -> &'static str {
        match self {
            Self::Stock => "stock-svc",
            Self::Order => "order-svc",
            Self::Notify => "notify-svc",
        }
    }

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
pub enum StepKind<S> {
    /// A command to a participant, answered by a reply; `tag` is its message tag.
    Command {
        participant: Participant,
        tag: &'static str,
    },
    /// Waiting for a signal (the pivot passed, or an abort) or a deadline. The deadline is
    /// fixed once, when `fixed_by` is first sent (so that command can carry it), `window` after
    /// that; the saga acts on it `margin` later (clocks of other hosts may run behind).
    Wait {
        window: Duration,
        fixed_by: S,
        margin: Duration,
    },
}

/// Whether an operator may mark a parked step done by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Allowed,
    /// Refused, with the invariant skipping would break.
    Refused(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpec<S> {
    pub name: S,
    pub kind: StepKind<S>,
    /// The step that undoes this one when the saga compensates.
    pub compensation: Option<S>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub skip: Skip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration<S> {
    pub name: &'static str,
    /// Forward steps, in order.
    pub forward: Vec<StepSpec<S>>,
    /// Compensation steps.
    pub compensations: Vec<StepSpec<S>>,
    /// The step after which the saga only goes forward (retry, then park).
    pub pivot: S,
    /// The compensation that undoes the saga's start. It runs first in every compensation: it
    /// is the compare-and-set that decides whether the saga may still be undone, and when it is
    /// refused because the pivot was passed ([`Verdict::PivotPassed`]) the saga goes forward
    /// instead, with nothing undone.
    pub abort: S,
    /// Commands sent once when the saga completes; their failure never undoes it.
    pub on_complete: Vec<StepSpec<S>>,
    /// Commands sent once when the saga ends compensated, if its type says the undo is worth
    /// telling ([`SagaType::announces_compensation`]); their failure changes nothing.
    pub on_compensated: Vec<StepSpec<S>>,
    /// Steps the type no longer declares, each with the declared step that does its work now.
    /// A saga an older version left at one (or moved to one while versions overlapped) goes on
    /// at its replacement: after the retired step's reply, at its timeout or retry, at an
    /// operator's retry.
    pub retired: Vec<(S, S)>,
}

impl<S: StepName> Declaration<S> {
    pub fn step(&self, name: S) -> Option<&StepSpec<S>> {
        self.forward
            .iter()
            .chain(&self.compensations)
            .chain(&self.on_complete)
            .chain(&self.on_compensated)
            .find(|s| s.name == name)
    }

    /// The declared step that does the work of retired step `name`.
    pub fn replacement(&self, name: S) -> Option<S> {
        self.retired
            .iter()
            .find(|(retired, _)| *retired == name)
            .map(|(_, now)| *now)
    }

    fn position(&self, name: S) -> Option<usize> {
        self.forward.iter().position(|s| s.name == name)
    }

    /// Whether `name` is a forward step after the pivot (it only retries).
    pub fn after_pivot(&self, name: S) -> bool {
        match (self.position(name), self.position(self.pivot)) {
            (Some(step), Some(pivot)) => step > pivot,
            _ => false,
        }
    }

    pub fn is_compensation(&self, name: S) -> bool {
        self.compensations.iter().any(|s| s.name == name)
    }

    /// The forward step after `name`.
    pub fn next(&self, name: S) -> Option<&StepSpec<S>> {
        self.position(name).and_then(|i| self.forward.get(i + 1))
    }

    /// What undoes the saga when it stops at forward step `at`: the abort step first, then the
    /// compensations of the steps before `at` (and of `at` itself when its effect may have
    /// happened), newest first.
    pub fn compensation_plan(&self, at: S, include_at: bool) -> Vec<S> {
        let end = self
            .position(at)
            .map_or(0, |i| if include_at { i + 1 } else { i });
        std::iter::once(self.abort)
            .chain(
                self.forward[..end]
                    .iter()
                    .rev()
                    .filter_map(|s| s.compensation),
            )
            .collect()
    }

    /// The wait step whose deadline `step` fixes when it is first sent.
    pub fn wait_fixed_by(&self, step: S) -> Option<Duration> {
        self.forward.iter().find_map(|s| match s.kind {
            StepKind::Wait {
                window, fixed_by, ..
            } if fixed_by == step => Some(window),
            _ => None,
        })
    }
}

/// What a participant's reply means for the saga.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The step's effect happened: on to the next step (or compensation).
    Done,
    /// A passing failure: the same step again after a backoff, under the same idempotency key.
    Retry,
    /// A business refusal before the pivot: this attempt's effect did not happen, and the saga
    /// is undone, the step's own compensation included (it fences off an earlier attempt
    /// delivered late).
    Abort,
    /// The abort step was refused because the saga passed its pivot: it goes forward instead.
    PivotPassed,
    /// Nothing the saga can do by itself: an operator decides.
    Park(String),
}

/// Why the engine is about to undo a saga (the saga type may record it in its data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    /// A step before the pivot spent its retries.
    Exhausted,
    /// The wait's deadline passed.
    DeadlinePassed,
    /// An abort was signalled (the buyer cancelled).
    Requested,
    /// An operator compensated the saga.
    Operator,
}

/// A saga type: its declaration, its data, what its replies mean and how its commands are
/// built.
pub trait SagaType: Send + Sync + 'static {
    type Step: StepName;
    /// What the saga carries beside the engine's own fields (stored as JSON).
    type Data: Serialize + DeserializeOwned + Clone + Debug + Send + Sync;

    fn declaration(&self) -> &Declaration<Self::Step>;

    /// What `reply` to `step` means; may keep what it carries in `data`.
    fn judge(&self, data: &mut Self::Data, step: Self::Step, reply: &Reply) -> Verdict;

    /// The engine is about to undo the saga because of `why`.
    fn undoing(&self, data: &mut Self::Data, why: Undo);

    /// Why the saga is being undone, in a closed set (a metrics label); `None` when it is not.
    fn undo_reason(&self, data: &Self::Data) -> Option<&'static str> {
        let _ = data;
        None
    }

    /// Whether the saga, ended compensated, sends its `on_compensated` commands.
    fn announces_compensation(&self, data: &Self::Data) -> bool {
        let _ = data;
        true
    }

    /// The command of `step`, built from the saga's data and deadline.
    fn command(
        &self,
        data: &Self::Data,
        deadline: Option<DateTime<Utc>>,
        step: Self::Step,
    ) -> Result<Body, String>;
}

//! A made-up saga type, declared here and nowhere in the engine, run through the step machine:
//! a transfer that debits, waits for an approval (its pivot), then credits; undone by voiding
//! the transfer first (refused once it was approved) and refunding the debit after; a receipt
//! goes out when it completes, a notice when it is undone after its debit was made.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{OrderCancel, OrderConfirm, Reply, ReplyOutcome};

use super::definition::{
    Declaration, Participant, RetryPolicy, SagaType, Skip, StepKind, StepName, StepSpec, Undo,
    Verdict,
};
use super::machine::{Effect, Machine, Saga, Signal, State, TimerKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Debit,
    Approval,
    Credit,
    Void,
    Refund,
    Receipt,
    Notice,
}

impl StepName for Step {
    const ALL: &'static [Self] = &[
        Self::Debit,
        Self::Approval,
        Self::Credit,
        Self::Void,
        Self::Refund,
        Self::Receipt,
        Self::Notice,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Debit => "DEBIT",
            Self::Approval => "APPROVAL",
            Self::Credit => "CREDIT",
            Self::Void => "VOID",
            Self::Refund => "REFUND",
            Self::Receipt => "RECEIPT",
            Self::Notice => "NOTICE",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TransferData {
    undone_because: Option<String>,
    debited: bool,
}

struct Transfer {
    declaration: Declaration<Step>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Transfer {
    fn new() -> Self {
        let spec = |name, kind, compensation, skip| StepSpec {
            name,
            kind,
            compensation,
            timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 2,
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(1),
            },
            skip,
        };
        let command = |name: Step| StepKind::Command {
            participant: Participant::Order,
            tag: name.as_str(),
        };
        Self {
            declaration: Declaration {
                name: "TRANSFER",
                forward: vec![
                    spec(
                        Step::Debit,
                        command(Step::Debit),
                        Some(Step::Refund),
                        Skip::Allowed,
                    ),
                    spec(
                        Step::Approval,
                        StepKind::Wait {
                            window: WINDOW,
                            fixed_by: Step::Debit,
                            margin: Duration::ZERO,
                        },
                        None,
                        Skip::Refused("not approved"),
                    ),
                    spec(Step::Credit, command(Step::Credit), None, Skip::Allowed),
                ],
                compensations: vec![
                    spec(
                        Step::Void,
                        command(Step::Void),
                        None,
                        Skip::Refused("it decides"),
                    ),
                    spec(Step::Refund, command(Step::Refund), None, Skip::Allowed),
                ],
                pivot: Step::Approval,
                abort: Step::Void,
                on_complete: vec![spec(
                    Step::Receipt,
                    command(Step::Receipt),
                    None,
                    Skip::Allowed,
                )],
                on_compensated: vec![spec(
                    Step::Notice,
                    command(Step::Notice),
                    None,
                    Skip::Allowed,
                )],
                retired: Vec::new(),
            },
        }
    }
}

impl SagaType for Transfer {
    type Step = Step;
    type Data = TransferData;

    fn declaration(&self) -> &Declaration<Step> {
        &self.declaration
    }

    fn judge(&self, data: &mut TransferData, step: Step, reply: &Reply) -> Verdict {
        match (reply.outcome(), step, reply.reason.as_str()) {
            (ReplyOutcome::Ok, _, _) => {
                data.debited |= step == Step::Debit;
                Verdict::Done
            }
            (ReplyOutcome::Refused, Step::Void, "APPROVED") => Verdict::PivotPassed,
            (ReplyOutcome::Refused, Step::Debit, _) => Verdict::Abort,
            (ReplyOutcome::Refused, _, reason) => Verdict::Park(reason.to_owned()),
            _ => Verdict::Retry,
        }
    }

    fn undoing(&self, data: &mut TransferData, why: Undo) {
        data.undone_because
            .get_or_insert_with(|| format!("{why:?}"));
    }

    fn announces_compensation(&self, data: &TransferData) -> bool {
        data.debited
    }

    fn command(
        &self,
        _data: &TransferData,
        _deadline: Option<DateTime<Utc>>,
        step: Step,
    ) -> Result<Body, String> {
        Ok(match step {
            Step::Approval => return Err("a wait".into()),
            Step::Void => Body::OrderCancel(OrderCancel::default()),
            _ => Body::OrderConfirm(OrderConfirm {}),
        })
    }
}

type TransferSaga = Saga<Step, TransferData>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
        .single()
        .expect("a time")
}

fn reply(outcome: ReplyOutcome, reason: &str) -> Reply {
    Reply {
        outcome: outcome as i32,
        reason: reason.into(),
        ..Reply::default()
    }
}

/// Runs `change` on `saga` and returns the commands it sends (step, attempt).
fn run(
    saga: &mut TransferSaga,
    change: impl FnOnce(&mut Machine<'_, Transfer>, &mut TransferSaga),
) -> Vec<(Step, i32)> {
    let transfer = Transfer::new();
    let mut machine = Machine::new(&transfer, t0());
    change(&mut machine, saga);
    machine
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { step, attempt } => Some((*step, *attempt)),
            Effect::Announce { step } => Some((*step, 0)),
            Effect::Timer { .. } => None,
        })
        .collect()
}

fn started() -> TransferSaga {
    let mut saga = Saga::new(Step::Debit, TransferData::default());
    assert_eq!(run(&mut saga, |m, s| m.start(s)), [(Step::Debit, 1)]);
    saga
}

/// Times out the current attempt, then fires the retry it schedules (if any).
fn time_out(saga: &mut TransferSaga) -> Vec<(Step, i32)> {
    let (step, attempt) = (saga.step, saga.attempt);
    let mut sent = run(saga, |m, s| {
        assert!(m.timer(s, TimerKind::StepTimeout, step, attempt));
    });
    if saga.state != State::Parked && saga.step == step {
        sent.extend(run(saga, |m, s| {
            m.timer(s, TimerKind::Retry, step, attempt + 1);
        }));
    }
    sent
}

#[test]
fn a_made_up_saga_runs_forward_through_its_wait_to_completion() {
    let mut saga = started();
    assert_eq!(saga.deadline, Some(t0() + chrono::Duration::seconds(60)));
    assert!(run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, ""))).is_empty());
    assert_eq!((saga.state, saga.step), (State::Waiting, Step::Approval));
    let sent = run(&mut saga, |m, s| {
        assert!(m.signal(s, Signal::PivotPassed));
    });
    assert_eq!(sent, [(Step::Credit, 1)]);
    let sent = run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(sent, [(Step::Receipt, 0)]);
    assert_eq!(saga.state, State::Completed);
}

#[test]
fn at_the_deadline_the_abort_runs_first_and_its_refusal_carries_the_saga_forward() {
    let mut saga = started();
    run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    let sent = run(&mut saga, |m, s| {
        assert!(m.timer(s, TimerKind::Deadline, Step::Approval, 1));
    });
    assert_eq!(sent, [(Step::Void, 1)]);
    assert_eq!(saga.compensations, [Step::Refund]);
    assert_eq!(saga.data.undone_because.as_deref(), Some("DeadlinePassed"));
    // Approved meanwhile: nothing was refunded, and the credit follows.
    let sent = run(&mut saga, |m, s| {
        m.reply(s, &reply(ReplyOutcome::Refused, "APPROVED"));
    });
    assert_eq!(sent, [(Step::Credit, 1)]);
    assert!(saga.passed_pivot && saga.compensations.is_empty());
    assert_eq!(saga.state, State::Running);
}

#[test]
fn a_step_that_keeps_failing_before_the_pivot_is_undone_abort_first() {
    let mut saga = started();
    assert_eq!(time_out(&mut saga), [(Step::Debit, 2)]);
    assert_eq!(time_out(&mut saga), [(Step::Void, 1)]);
    assert_eq!(saga.state, State::Compensating);
    assert_eq!(saga.compensations, [Step::Refund]);
    assert_eq!(saga.data.undone_because.as_deref(), Some("Exhausted"));
    let sent = run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(sent, [(Step::Refund, 1)]);
    let sent = run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(saga.state, State::Compensated);
    assert!(sent.is_empty(), "no debit was made: nothing to tell");
}

#[test]
fn an_operator_compensates_a_saga_parked_in_its_compensation_from_where_it_stopped() {
    let mut saga = started();
    run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    run(&mut saga, |m, s| {
        m.timer(s, TimerKind::Deadline, Step::Approval, 1);
    });
    run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(saga.step, Step::Refund);
    time_out(&mut saga);
    time_out(&mut saga);
    assert_eq!((saga.state, saga.step), (State::Parked, Step::Refund));

    let sent = run(&mut saga, |m, s| m.compensate_now(s).expect("allowed"));
    assert_eq!(
        sent,
        [(Step::Refund, 3)],
        "the owed refund, on a fresh attempt"
    );
    // A fresh budget: one timeout retries instead of parking.
    assert_eq!(time_out(&mut saga), [(Step::Refund, 4)]);
    let sent = run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(saga.state, State::Compensated);
    assert_eq!(
        sent,
        [(Step::Notice, 0)],
        "the debit was made: the undo is told"
    );
}

#[test]
fn an_operator_retry_gives_a_fresh_budget_and_a_skip_moves_the_saga_on() {
    let mut saga = started();
    run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    run(&mut saga, |m, s| {
        m.signal(s, Signal::PivotPassed);
    });
    time_out(&mut saga);
    time_out(&mut saga);
    assert_eq!((saga.state, saga.step), (State::Parked, Step::Credit));
    assert!(
        run(&mut saga, |m, s| {
            assert!(m.compensate_now(s).is_err(), "past the pivot");
        })
        .is_empty()
    );

    let sent = run(&mut saga, |m, s| m.retry(s).expect("parked"));
    assert_eq!(sent, [(Step::Credit, 3)]);
    assert_eq!(time_out(&mut saga), [(Step::Credit, 4)]);
    time_out(&mut saga);
    assert_eq!(saga.state, State::Parked);

    let sent = run(&mut saga, |m, s| m.skip(s).expect("credit may be skipped"));
    assert_eq!(sent, [(Step::Receipt, 0)]);
    assert_eq!(saga.state, State::Completed);
}

#[test]
fn a_skip_that_would_break_an_invariant_is_refused_and_changes_nothing() {
    let mut saga = started();
    let refused = run(&mut saga, |m, s| {
        let why = m.skip(s).expect_err("not parked");
        assert!(why.0.contains("RUNNING"), "{why:?}");
    });
    assert!(refused.is_empty());
    saga.state = State::Parked;
    saga.step = Step::Void;
    let before = saga.clone();
    run(&mut saga, |m, s| {
        let why = m.skip(s).expect_err("the abort decides");
        assert!(why.0.contains("it decides"), "{why:?}");
    });
    assert_eq!(saga, before);
}

#[test]
fn an_abort_signalled_while_a_step_is_in_flight_is_acted_on_at_its_reply() {
    let mut saga = started();
    assert!(
        run(&mut saga, |m, s| {
            assert!(m.signal(s, Signal::Abort));
        })
        .is_empty()
    );
    assert!(saga.abort_requested);
    let sent = run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(sent, [(Step::Void, 1)]);
    assert_eq!(saga.compensations, [Step::Refund]);
    assert_eq!(saga.data.undone_because.as_deref(), Some("Requested"));
}

#[test]
fn an_operator_compensates_a_saga_before_its_pivot_abort_first_from_any_forward_step() {
    // In flight at its first step: the step's effect may have happened, so it is undone too.
    let mut saga = started();
    let sent = run(&mut saga, |m, s| m.compensate_now(s).expect("allowed"));
    assert_eq!(sent, [(Step::Void, 1)]);
    assert_eq!(saga.compensations, [Step::Refund]);
    assert_eq!(saga.data.undone_because.as_deref(), Some("Operator"));
    // A late reply of the abandoned step changes nothing; the compensations run in order.
    run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(saga.step, Step::Refund);
    run(&mut saga, |m, s| m.reply(s, &reply(ReplyOutcome::Ok, "")));
    assert_eq!(saga.state, State::Compensated);

    // Waiting at the pivot: the same order, abort first.
    let mut waiting = started();
    run(&mut waiting, |m, s| {
        m.reply(s, &reply(ReplyOutcome::Ok, ""))
    });
    assert_eq!(waiting.state, State::Waiting);
    let sent = run(&mut waiting, |m, s| m.compensate_now(s).expect("allowed"));
    assert_eq!(sent, [(Step::Void, 1)]);
    assert_eq!(waiting.compensations, [Step::Refund]);
}

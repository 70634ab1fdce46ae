//! The purchase declaration: its compensation order, pivot, reply rules and skip rules.

use super::*;

fn purchase() -> Purchase {
    Purchase::new(&SagaSettings::default())
}

/// A purchase of one ticket at 1.00, reserved (its buyer saw it awaiting payment).
fn reserved() -> PurchaseData {
    PurchaseData {
        user_id: "u".into(),
        tier_id: 1,
        quantity: 1,
        unit_price_cents: Some(100),
        cancel_reason: None,
        reserved: true,
    }
}

#[test]
fn a_refused_or_unknown_deduct_cancels_the_order_then_returns_the_stock() {
    assert_eq!(
        purchase()
            .declaration()
            .compensation_plan(Step::StockDeduct, true),
        [Step::OrderCancel, Step::StockRollback]
    );
}

#[test]
fn an_unpaid_reservation_is_cancelled_before_its_stock_returns() {
    assert_eq!(
        purchase()
            .declaration()
            .compensation_plan(Step::AwaitPayment, false),
        [Step::OrderCancel, Step::StockRollback]
    );
}

#[test]
fn an_undo_is_told_to_the_buyer_only_once_the_order_was_reserved() {
    let saga = purchase();
    let ok = Reply {
        outcome: ReplyOutcome::Ok as i32,
        ..Reply::default()
    };
    let mut data = PurchaseData {
        user_id: "u".into(),
        tier_id: 1,
        quantity: 1,
        unit_price_cents: None,
        cancel_reason: None,
        reserved: false,
    };
    let deducted = Reply {
        body: Some(ReplyBody::StockDeducted(
            ticket_proto::saga::v1::StockDeducted {
                unit_price_cents: 7_500,
                available: 9,
            },
        )),
        ..ok.clone()
    };
    assert_eq!(
        saga.judge(&mut data, Step::StockDeduct, &ok),
        Verdict::Retry,
        "no price"
    );
    assert_eq!(
        saga.judge(&mut data, Step::StockDeduct, &deducted),
        Verdict::Done
    );
    assert!(
        !saga.announces_compensation(&data),
        "sold out or limit: answered already"
    );
    assert_eq!(
        saga.judge(&mut data, Step::OrderReserve, &ok),
        Verdict::Done
    );
    assert!(saga.announces_compensation(&data));
    let told: Vec<(Step, Vec<String>, String)> = saga
        .declaration()
        .on_compensated
        .iter()
        .map(|spec| match saga.command(&data, None, spec.name) {
            Ok(Body::Notify(n)) if n.channel.is_empty() => (spec.name, n.channels, n.template),
            other => panic!("{:?}: {other:?}", spec.name),
        })
        .collect();
    assert_eq!(
        told,
        [(
            Step::NotifyCancelled,
            vec!["SMS".into(), "EMAIL".into(), "PUSH".into()],
            "order_cancelled".into()
        )]
    );
    // Saved before the flag existed, a saga reads as not reserved.
    let old: PurchaseData =
        serde_json::from_str(r#"{"user_id":"u","tier_id":1,"quantity":1}"#).expect("json");
    assert!(!old.reserved);
}

#[test]
fn steps_after_the_pivot_only_retry() {
    let saga = purchase();
    let decl = saga.declaration();
    assert!(!decl.after_pivot(Step::StockDeduct));
    assert!(!decl.after_pivot(Step::AwaitPayment));
    assert!(decl.after_pivot(Step::StockConfirm));
    assert!(decl.after_pivot(Step::OrderConfirm));
    assert_eq!(
        decl.next(Step::OrderReserve).map(|s| s.name),
        Some(Step::AwaitPayment)
    );
}

#[test]
fn a_cancel_refused_because_the_order_is_paid_means_the_pivot_passed() {
    let reply = Reply {
        outcome: ReplyOutcome::Refused as i32,
        reason: "ORDER_PAID".into(),
        ..Reply::default()
    };
    let mut data = PurchaseData {
        user_id: "u".into(),
        tier_id: 1,
        quantity: 1,
        unit_price_cents: Some(100),
        cancel_reason: Some(CancelReason::PaymentExpired),
        reserved: true,
    };
    assert_eq!(
        purchase().judge(&mut data, Step::OrderCancel, &reply),
        Verdict::PivotPassed
    );
}

#[test]
fn only_steps_an_operator_can_do_by_hand_may_be_skipped() {
    let saga = purchase();
    let decl = saga.declaration();
    let skippable: Vec<Step> = Step::ALL
        .iter()
        .copied()
        .filter(|s| decl.step(*s).is_some_and(|spec| spec.skip == Skip::Allowed))
        .collect();
    assert_eq!(
        skippable,
        [
            Step::StockConfirm,
            Step::OrderConfirm,
            Step::StockRollback,
            Step::Notify,
            Step::NotifyCancelled,
        ]
    );
    let Some(Skip::Refused(why)) = decl.step(Step::OrderCancel).map(|s| s.skip) else {
        panic!("the order's cancel must not be skipped");
    };
    assert!(why.contains("paid buyer"), "{why}");
}

#[test]
fn a_purchase_tells_the_buyer_on_every_channel_in_one_command_after_its_confirmation() {
    let saga = purchase();
    let decl = saga.declaration();
    assert_eq!(
        decl.next(Step::OrderConfirm).map(|s| s.name),
        Some(Step::Notify)
    );
    assert!(decl.next(Step::Notify).is_none(), "the purchase ends there");
    let data = reserved();
    let Ok(Body::Notify(n)) = saga.command(&data, None, Step::Notify) else {
        panic!("NOTIFY is a notification");
    };
    assert_eq!(n.channels, ["SMS", "EMAIL", "PUSH"]);
    assert_eq!(n.template, "purchase_confirmed");
    let refused = Reply {
        outcome: ReplyOutcome::Refused as i32,
        reason: "INVALID".into(),
        ..Reply::default()
    };
    let mut data = data;
    assert_eq!(
        saga.judge(&mut data, Step::Notify, &refused),
        Verdict::Done,
        "a notification that can never be sent holds up nothing"
    );
    // The retired steps, one per channel, are read from old logs but never declared or sent.
    for retired in [
        Step::NotifySms,
        Step::NotifyEmail,
        Step::NotifyCancelledPush,
    ] {
        assert!(decl.step(retired).is_none(), "{retired:?}");
        assert!(saga.command(&data, None, retired).is_err());
    }
}

/// A saga at a retired step (left by an older orchestrator running beside this one) goes on at
/// `NOTIFY`: after the retired step's reply, at its timeout, and at an operator's retry.
#[test]
fn a_saga_met_at_a_retired_notification_step_goes_on_at_notify() {
    use crate::saga::machine::{Effect, Machine, Saga, State, TimerKind};

    let saga_type = purchase();
    let at = |step: Step, state: State| Saga {
        state,
        step,
        attempt: 1,
        attempt_base: 0,
        compensations: Vec::new(),
        passed_pivot: true,
        abort_requested: false,
        deadline: None,
        incident: None,
        data: reserved(),
    };
    let sends = |effects: &[Effect<Step>]| -> Vec<(Step, i32)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { step, attempt } => Some((*step, *attempt)),
                _ => None,
            })
            .collect()
    };
    let now = Utc::now();

    let mut replied = at(Step::NotifySms, State::Running);
    let mut machine = Machine::new(&saga_type, now);
    let ok = Reply {
        outcome: ReplyOutcome::Ok as i32,
        ..Reply::default()
    };
    machine.reply(&mut replied, &ok);
    assert_eq!(sends(&machine.effects), [(Step::Notify, 1)]);
    assert_eq!(
        (replied.state, replied.step),
        (State::Running, Step::Notify)
    );

    let mut timed_out = at(Step::NotifyEmail, State::Running);
    let mut machine = Machine::new(&saga_type, now);
    assert!(machine.timer(&mut timed_out, TimerKind::StepTimeout, Step::NotifyEmail, 1));
    assert_eq!(sends(&machine.effects), [(Step::Notify, 1)]);

    let mut parked = at(Step::NotifyPush, State::Parked);
    let mut machine = Machine::new(&saga_type, now);
    machine
        .retry(&mut parked)
        .expect("a parked saga is retried");
    assert_eq!(sends(&machine.effects), [(Step::Notify, 2)]);
    assert_eq!((parked.state, parked.step), (State::Running, Step::Notify));
}

#[test]
fn step_names_and_reasons_round_trip() {
    for step in Step::ALL {
        assert_eq!(Step::parse(step.as_str()), Some(*step));
    }
    for reason in CancelReason::ALL {
        assert_eq!(CancelReason::parse(reason.as_str()), Some(reason));
        let json = serde_json::to_string(&reason).expect("json");
        assert_eq!(json, format!("\"{}\"", reason.as_str()));
    }
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

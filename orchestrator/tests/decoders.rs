//! Properties of the orchestrator's decoders of what it consumes: a participant's reply as the
//! purchase saga reads it (`Purchase::judge`), the cancel reason of an `ORDER_CANCELLED` event
//! (`CancelReason::parse`), a step name, the tag of a reply (`StepName::parse`), and a command's
//! topic (`Participant::of_topic`). The dead letters of `DEAD_LETTER_TOPIC` and `%DLQ%<group>`
//! are read by a private function, whose properties are beside it
//! (`src/dead_letters/prop_tests.rs`).
//!
//! Each property runs 256 cases and writes no regression file.

use orchestrator::saga::definition::{Participant, SagaType, StepName, Verdict};
use orchestrator::saga::purchase::{CancelReason, Purchase, PurchaseData, SagaSettings, Step};
use proptest::prelude::*;
use prost::Message;
use prost::bytes::Bytes;
use ticket_platform::messaging::{IncomingMessage, tag, topic};
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{Reply, ReplyOutcome, StockDeducted};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A reply as the replies' consumer hands it to its handler.
fn delivered(body: Vec<u8>) -> IncomingMessage {
    IncomingMessage {
        topic: topic::SAGA_REPLY.into(),
        tag: tag::STOCK_DEDUCT.into(),
        key: "T1".into(),
        message_id: "0192f0c4-7a00-7000-8000-000000000001".into(),
        saga_id: None,
        step: None,
        attempt: 0,
        traceparent: None,
        body: Bytes::from(body),
        reconsume_times: 0,
        broker_message_id: "7F000001000078C60000000000000001".into(),
        queue_id: 0,
        delivered_from: topic::SAGA_REPLY.into(),
        stored_at_ms: 0,
    }
}

fn purchase() -> Purchase {
    Purchase::new(&SagaSettings::default())
}

/// Text as it may arrive: mostly short names, sometimes any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9_-]{0,16}", 1 => any::<String>()]
}

fn step() -> impl Strategy<Value = Step> {
    proptest::sample::select(Step::ALL.to_vec())
}

fn cancel_reason() -> impl Strategy<Value = CancelReason> {
    proptest::sample::select(CancelReason::ALL.to_vec())
}

fn purchase_data() -> impl Strategy<Value = PurchaseData> {
    (
        "[a-z0-9]{1,12}",
        1i64..1_000_000,
        1i32..10,
        proptest::option::of(0i64..1_000_000),
        proptest::option::of(cancel_reason()),
        any::<bool>(),
    )
        .prop_map(
            |(user_id, tier_id, quantity, unit_price_cents, cancel_reason, reserved)| {
                PurchaseData {
                    user_id,
                    tier_id,
                    quantity,
                    unit_price_cents,
                    cancel_reason,
                    reserved,
                }
            },
        )
}

/// A reply as it may arrive: any step name, any outcome number, any body.
fn reply_message() -> impl Strategy<Value = Reply> {
    (
        text(),
        text(),
        any::<u32>(),
        prop_oneof![3 => 0..=3i32, 1 => any::<i32>()],
        prop_oneof![
            Just("SOLD_OUT".to_owned()),
            Just("LIMIT_REACHED".to_owned()),
            Just("ORDER_PAID".to_owned()),
            Just("CONFLICT".to_owned()),
            text(),
        ],
        text(),
        proptest::option::of((any::<i64>(), any::<i64>()).prop_map(
            |(unit_price_cents, available)| {
                ReplyBody::StockDeducted(StockDeducted {
                    unit_price_cents,
                    available,
                })
            },
        )),
    )
        .prop_map(
            |(saga_id, step, attempt, outcome, reason, detail, body)| Reply {
                saga_id,
                order_no: "T1".into(),
                step,
                attempt,
                outcome,
                reason,
                detail,
                body,
            },
        )
}

fn is_notification(step: Step) -> bool {
    matches!(
        step,
        Step::Notify
            | Step::NotifyCancelled
            | Step::NotifySms
            | Step::NotifyEmail
            | Step::NotifyPush
            | Step::NotifyCancelledSms
            | Step::NotifyCancelledEmail
            | Step::NotifyCancelledPush
    )
}

proptest! {
    #![proptest_config(config())]

    // ---- Purchase::judge ----

    /// Any reply to any step is judged without panicking. OK is done (but for a deduct
    /// without a usable price, below, which is asked again); a refusal is never
    /// taken for done except by a notification (which never holds up a purchase); a failure,
    /// `UNSPECIFIED` or an outcome this version does not know only retries the step, and
    /// changes nothing the purchase carries.
    #[test]
    fn any_reply_is_judged_and_an_unknown_outcome_only_retries(
        step in step(),
        data in purchase_data(),
        reply in reply_message(),
    ) {
        let mut judged = data.clone();
        let verdict = purchase().judge(&mut judged, step, &reply);
        match ReplyOutcome::try_from(reply.outcome) {
            Ok(ReplyOutcome::Ok) => {
                let priced = matches!(
                    &reply.body,
                    Some(ReplyBody::StockDeducted(d)) if d.unit_price_cents >= 0
                );
                let expected = if step == Step::StockDeduct && !priced {
                    Verdict::Retry
                } else {
                    Verdict::Done
                };
                prop_assert_eq!(verdict, expected);
            }
            Ok(ReplyOutcome::Refused) => {
                if !is_notification(step) {
                    prop_assert_ne!(verdict, Verdict::Done);
                }
            }
            Ok(ReplyOutcome::Failed | ReplyOutcome::Unspecified) | Err(_) => {
                prop_assert_eq!(verdict, Verdict::Retry);
                prop_assert_eq!(judged, data);
            }
        }
    }

    /// The unit price in a `STOCK_DEDUCT` reply, sent and decoded as the consumer does, is
    /// the price the purchase carries on (the price is always the server's).
    #[test]
    fn a_deduct_reply_carries_its_price_into_the_purchase(
        data in purchase_data(),
        price in 0i64..=i64::MAX,
        available in any::<i64>(),
        saga_id in "[a-z0-9-]{1,36}",
        attempt in 1u32..10,
    ) {
        let sent = Reply {
            saga_id,
            order_no: "T1".into(),
            step: Step::StockDeduct.as_str().into(),
            attempt,
            outcome: ReplyOutcome::Ok as i32,
            reason: String::new(),
            detail: "held".into(),
            body: Some(ReplyBody::StockDeducted(StockDeducted {
                unit_price_cents: price,
                available,
            })),
        };
        let got: Reply = delivered(sent.encode_to_vec())
            .decode()
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        let mut judged = PurchaseData {
            unit_price_cents: None,
            ..data
        };
        prop_assert_eq!(purchase().judge(&mut judged, Step::StockDeduct, &got), Verdict::Done);
        prop_assert_eq!(judged.unit_price_cents, Some(price));
    }

    /// A refused deduct undoes the purchase, with the reason the stock gave when it is one the
    /// buyer can be told (`SOLD_OUT`, `LIMIT_REACHED`), `SYSTEM` otherwise; a reason already
    /// given stays.
    #[test]
    fn a_refused_deduct_undoes_the_purchase_with_its_reason(
        data in purchase_data(),
        reason in prop_oneof![
            Just("SOLD_OUT".to_owned()),
            Just("LIMIT_REACHED".to_owned()),
            "[A-Z_]{0,16}",
        ],
    ) {
        let reply = Reply {
            step: Step::StockDeduct.as_str().into(),
            outcome: ReplyOutcome::Refused as i32,
            reason: reason.clone(),
            ..Reply::default()
        };
        let mut judged = data.clone();
        prop_assert_eq!(purchase().judge(&mut judged, Step::StockDeduct, &reply), Verdict::Abort);
        let told = match reason.as_str() {
            "SOLD_OUT" => CancelReason::SoldOut,
            "LIMIT_REACHED" => CancelReason::LimitReached,
            _ => CancelReason::System,
        };
        prop_assert_eq!(judged.cancel_reason, Some(data.cancel_reason.unwrap_or(told)));
    }

    /// A refused cancel goes on with the purchase when the order was paid, retries on a
    /// conflict, and parks for an operator otherwise, saying what was refused and why.
    #[test]
    fn a_refused_cancel_goes_on_when_paid_and_parks_otherwise(
        data in purchase_data(),
        reason in prop_oneof![
            Just("ORDER_PAID".to_owned()),
            Just("CONFLICT".to_owned()),
            "[A-Z_]{0,16}",
        ],
        detail in text(),
    ) {
        let reply = Reply {
            step: Step::OrderCancel.as_str().into(),
            outcome: ReplyOutcome::Refused as i32,
            reason: reason.clone(),
            detail,
            ..Reply::default()
        };
        let mut judged = data.clone();
        let verdict = purchase().judge(&mut judged, Step::OrderCancel, &reply);
        match reason.as_str() {
            "ORDER_PAID" => {
                prop_assert_eq!(verdict, Verdict::PivotPassed);
                prop_assert_eq!(judged.cancel_reason, None);
            }
            "CONFLICT" => prop_assert_eq!(verdict, Verdict::Retry),
            _ => match verdict {
                Verdict::Park(incident) => {
                    prop_assert!(incident.contains("ORDER_CANCEL was refused"), "{incident}");
                    prop_assert!(incident.contains(&reason), "{incident}");
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "a refused cancel gave {other:?}"
                    )));
                }
            },
        }
    }

    /// Guards against what was once so: an OK `STOCK_DEDUCT`
    /// reply without a `StockDeducted` body, or with a negative price, is judged done. The
    /// purchase then has no price (its `ORDER_RESERVE` cannot be built: "ORDER_RESERVE before
    /// the deduct gave a price") or a negative one (order-svc rejects the reserve as invalid),
    /// though the reply itself was the malformed thing.
    #[test]
    fn a_deduct_reply_without_a_usable_price_is_not_done(
        data in purchase_data(),
        price in prop_oneof![Just(None), (i64::MIN..0).prop_map(Some)],
    ) {
        let reply = Reply {
            step: Step::StockDeduct.as_str().into(),
            outcome: ReplyOutcome::Ok as i32,
            body: price.map(|unit_price_cents| {
                ReplyBody::StockDeducted(StockDeducted {
                    unit_price_cents,
                    available: 0,
                })
            }),
            ..Reply::default()
        };
        let mut judged = PurchaseData {
            unit_price_cents: None,
            ..data
        };
        let verdict = purchase().judge(&mut judged, Step::StockDeduct, &reply);
        prop_assert!(
            verdict != Verdict::Done || judged.unit_price_cents.is_some_and(|p| p >= 0),
            "{verdict:?} with the price {:?}",
            judged.unit_price_cents
        );
    }

    // ---- CancelReason::parse, StepName::parse, Participant::of_topic ----

    /// Every cancel reason reads back from its name; any other text reads as none (case
    /// matters: `user_cancelled` is not a reason).
    #[test]
    fn a_cancel_reason_reads_back_and_nothing_else_does(
        reason in cancel_reason(),
        other in prop_oneof!["[A-Z_]{0,16}", any::<String>()],
    ) {
        prop_assert_eq!(CancelReason::parse(reason.as_str()), Some(reason));
        prop_assert_eq!(CancelReason::parse(&reason.as_str().to_lowercase()), None);
        if let Some(parsed) = CancelReason::parse(&other) {
            prop_assert_eq!(parsed.as_str(), other.as_str());
        }
    }

    /// Every step reads back from its name (the tag of its replies); any other text reads as
    /// none.
    #[test]
    fn a_step_reads_back_and_nothing_else_does(
        step in step(),
        other in prop_oneof!["[A-Z_]{0,24}", any::<String>()],
    ) {
        prop_assert_eq!(Step::parse(step.as_str()), Some(step));
        if let Some(parsed) = Step::parse(&other) {
            prop_assert_eq!(parsed.as_str(), other.as_str());
        }
    }

    /// Every participant is found by its command topic; any other topic finds none.
    #[test]
    fn a_command_topic_names_its_participant(
        participant in proptest::sample::select(Participant::ALL.to_vec()),
        other in prop_oneof!["[A-Z_]{0,24}", any::<String>()],
    ) {
        prop_assert_eq!(Participant::of_topic(participant.topic()), Some(participant));
        if let Some(found) = Participant::of_topic(&other) {
            prop_assert_eq!(found.topic(), other.as_str());
        }
    }
}

//! Properties of order-svc's decoder of the saga's commands (`ORDER_RESERVE`, `ORDER_CONFIRM`,
//! `ORDER_CANCEL` on `ORDER_CMD_TOPIC`, or `Participant.Execute`): `OrderCommands::check`, which
//! the platform runs on a command after decoding its body and checking its envelope.
//!
//! Each property runs 256 cases and writes no regression file.

use chrono::{DateTime, Utc};
use order_svc::commands::{OrderCommand, OrderCommands, OrderStep};
use order_svc::metrics::OrderMetrics;
use order_svc::orders::CancelReason;
use proptest::prelude::*;
use prost::Message;
use prost::bytes::Bytes;
use ticket_platform::messaging::{IncomingMessage, tag, topic};
use ticket_platform::participant::CommandHandler;
use ticket_platform::time::timestamp;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{
    Command, Notify, OrderCancel, OrderConfirm, OrderReserve, StockConfirm, StockDeduct,
    StockRollback, StockSync,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn handler() -> OrderCommands {
    OrderCommands {
        metrics: OrderMetrics::default(),
    }
}

const REASONS: [CancelReason; 5] = [
    CancelReason::SoldOut,
    CancelReason::LimitReached,
    CancelReason::UserCancelled,
    CancelReason::PaymentExpired,
    CancelReason::System,
];

/// The seconds of protobuf's `Timestamp` range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const FIRST_SECOND: i64 = -62_135_596_800;
const LAST_SECOND: i64 = 253_402_300_799;

/// A command as order-svc's consumer hands it to the participant's handler.
fn delivered(body: Vec<u8>) -> IncomingMessage {
    IncomingMessage {
        topic: topic::ORDER_CMD.into(),
        tag: tag::ORDER_RESERVE.into(),
        key: "T1".into(),
        message_id: "0192f0c4-7a00-7000-8000-000000000001".into(),
        saga_id: Some("saga-1".into()),
        step: Some(tag::ORDER_RESERVE.into()),
        attempt: 1,
        traceparent: None,
        body: Bytes::from(body),
        reconsume_times: 0,
        broker_message_id: "7F000001000078C60000000000000001".into(),
        queue_id: 0,
        delivered_from: topic::ORDER_CMD.into(),
        stored_at_ms: 0,
    }
}

/// Text as it may arrive: mostly short names, sometimes any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9_-]{0,16}", 1 => any::<String>()]
}

fn order_no() -> impl Strategy<Value = String> {
    "[A-Za-z0-9-]{1,64}"
}

/// An order number order-svc must refuse: empty, with a space or a tab, or too long.
fn bad_order_no() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Z0-9]{1,8} [A-Z0-9]{1,8}",
        "[A-Z0-9]{1,8}\t",
        "[A-Z0-9]{65,80}",
    ]
}

/// The bodies of the other participants' commands.
fn other_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<i64>(), text(), any::<i32>()).prop_map(|(tier_id, user_id, quantity)| {
            Body::StockDeduct(StockDeduct {
                tier_id,
                user_id,
                quantity,
            })
        }),
        any::<i64>().prop_map(|tier_id| Body::StockConfirm(StockConfirm { tier_id })),
        any::<i64>().prop_map(|tier_id| Body::StockRollback(StockRollback { tier_id })),
        any::<i64>().prop_map(|tier_id| Body::StockSync(StockSync { tier_id })),
        (
            text(),
            text(),
            text(),
            proptest::collection::vec(text(), 0..4)
        )
            .prop_map(|(channel, user_id, template, channels)| {
                Body::Notify(Notify {
                    channel,
                    user_id,
                    template,
                    channels,
                })
            }),
    ]
}

/// A valid order step: its body, what order-svc reads from it and the tag it travels under.
fn order_step() -> impl Strategy<Value = (Body, OrderStep, &'static str)> {
    prop_oneof![
        (
            0i64..=i64::MAX,
            FIRST_SECOND..=LAST_SECOND,
            0u32..1_000_000_000,
        )
            .prop_map(|(unit_price_cents, seconds, nanos)| {
                let expire_at =
                    DateTime::<Utc>::from_timestamp(seconds, nanos).expect("within chrono's range");
                (
                    Body::OrderReserve(OrderReserve {
                        unit_price_cents,
                        expire_at: Some(timestamp(expire_at)),
                    }),
                    OrderStep::Reserve {
                        unit_price_cents,
                        expire_at,
                    },
                    tag::ORDER_RESERVE,
                )
            }),
        Just((
            Body::OrderConfirm(OrderConfirm {}),
            OrderStep::Confirm,
            tag::ORDER_CONFIRM,
        )),
        proptest::sample::select(REASONS.to_vec()).prop_map(|reason| {
            (
                Body::OrderCancel(OrderCancel {
                    reason: reason.as_str().into(),
                }),
                OrderStep::Cancel { reason },
                tag::ORDER_CANCEL,
            )
        }),
    ]
}

/// Any command body: valid order steps, broken ones, and other participants' commands.
fn any_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        order_step().prop_map(|(body, _, _)| body),
        (
            any::<i64>(),
            proptest::option::of((any::<i64>(), any::<i32>()))
        )
            .prop_map(|(unit_price_cents, expire_at)| {
                Body::OrderReserve(OrderReserve {
                    unit_price_cents,
                    expire_at: expire_at
                        .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                })
            }),
        text().prop_map(|reason| Body::OrderCancel(OrderCancel { reason })),
        other_body(),
    ]
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

proptest! {
    #![proptest_config(config())]

    /// Any command is checked without panicking; one accepted is an order step whose tag is
    /// the one its body travels under, for a valid order number.
    #[test]
    fn any_command_is_checked_without_panicking(
        order_no in prop_oneof![order_no(), text()],
        body in proptest::option::of(any_body()),
    ) {
        let command = Command {
            saga_id: "saga-1".into(),
            order_no: order_no.clone(),
            step: "ANY".into(),
            attempt: 1,
            body,
        };
        match handler().check(&command) {
            Ok((checked, travels_as)) => {
                prop_assert_eq!(&checked.order_no, &order_no);
                let expected = match (&command.body, &checked.step) {
                    (Some(Body::OrderReserve(_)), OrderStep::Reserve { .. }) => tag::ORDER_RESERVE,
                    (Some(Body::OrderConfirm(_)), OrderStep::Confirm) => tag::ORDER_CONFIRM,
                    (Some(Body::OrderCancel(_)), OrderStep::Cancel { .. }) => tag::ORDER_CANCEL,
                    (body, step) => {
                        return Err(TestCaseError::fail(format!(
                            "{body:?} was accepted as {step:?}"
                        )));
                    }
                };
                prop_assert_eq!(travels_as, expected);
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    /// A valid order command, sent and decoded as the consumer does, is read as sent: its
    /// order, its step with every field, and the tag it must travel under.
    #[test]
    fn a_valid_order_command_arrives_as_sent(
        order_no in order_no(),
        (body, step, travels_as) in order_step(),
        saga_id in "[a-z0-9-]{1,36}",
        attempt in 1u32..10,
    ) {
        let sent = Command {
            saga_id,
            order_no: order_no.clone(),
            step: travels_as.into(),
            attempt,
            body: Some(body),
        };
        let got: Command = delivered(sent.encode_to_vec())
            .decode()
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(
            handler().check(&got),
            Ok((OrderCommand { order_no, step }, travels_as))
        );
    }

    /// A command with one field wrong is refused, and the refusal names what is wrong.
    #[test]
    fn a_command_with_a_broken_field_says_which(
        order_no in order_no(),
        bad_order_no in bad_order_no(),
        defect in 0usize..7,
        price in i64::MIN..0,
        nanos in i32::MIN..0,
        reason in prop_oneof!["[A-Za-z_]{0,16}", any::<String>()],
        other in other_body(),
    ) {
        let reserve = |unit_price_cents, expire_at| {
            Some(Body::OrderReserve(OrderReserve {
                unit_price_cents,
                expire_at,
            }))
        };
        let (order_no, body, named) = match defect {
            0 => (order_no, reserve(price, Some(prost_types::Timestamp::default())), "unit_price_cents"),
            1 => (order_no, reserve(0, None), "expire_at"),
            2 => (
                order_no,
                reserve(0, Some(prost_types::Timestamp { seconds: 0, nanos })),
                "expire_at",
            ),
            3 => {
                prop_assume!(CancelReason::parse(&reason).is_none());
                (order_no, Some(Body::OrderCancel(OrderCancel { reason: reason.clone() })), "cancel reason")
            }
            4 => (order_no, None, "no body"),
            5 => (order_no, Some(other), "ORDER_RESERVE, ORDER_CONFIRM and ORDER_CANCEL only"),
            _ => (bad_order_no, Some(Body::OrderConfirm(OrderConfirm {})), "order_no"),
        };
        let command = Command {
            saga_id: "saga-1".into(),
            order_no,
            step: "ANY".into(),
            attempt: 1,
            body,
        };
        match handler().check(&command) {
            Ok((checked, _)) => {
                return Err(TestCaseError::fail(format!(
                    "a broken command was accepted as {checked:?}"
                )));
            }
            Err(refusal) => {
                prop_assert!(refusal.contains(named), "{refusal}");
                if defect == 3 {
                    prop_assert!(refusal.contains(&format!("{reason:?}")), "{refusal}");
                }
            }
        }
    }

    /// A command whose body is of a kind this version does not know (a oneof field added by a
    /// newer orchestrator) decodes with no body, and is refused for it, not taken for another.
    #[test]
    fn a_command_of_an_unknown_kind_is_refused(
        order_no in order_no(),
        number in 40u32..100,
        content in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut body = Command {
            saga_id: "saga-1".into(),
            order_no,
            step: "ORDER_SOMETHING".into(),
            attempt: 1,
            body: None,
        }
        .encode_to_vec();
        varint((u64::from(number) << 3) | 2, &mut body);
        varint(content.len() as u64, &mut body);
        body.extend_from_slice(&content);
        let got: Command = delivered(body)
            .decode()
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert!(got.body.is_none(), "{:?}", got.body);
        let refusal = handler().check(&got).map(|(checked, _)| checked);
        prop_assert!(
            refusal.as_ref().is_err_and(|reason| reason.contains("no body")),
            "{refusal:?}"
        );
    }
}

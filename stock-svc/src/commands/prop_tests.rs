//! Properties of [`stock_request`], stock-svc's decoder of the saga's stock commands
//! (`STOCK_DEDUCT`, `STOCK_CONFIRM`, `STOCK_ROLLBACK`, `STOCK_SYNC` on `STOCK_TOPIC`, or
//! `Participant.Execute`), which the platform runs on a command after decoding its body and
//! checking its envelope (the body's decoding is covered in platform/tests/decoders.rs).
//! 256 cases each, no regression file.

use proptest::prelude::*;
use ticket_platform::messaging::tag;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{
    Command, Notify, OrderCancel, OrderConfirm, OrderReserve, StockConfirm, StockDeduct,
    StockRollback, StockSync,
};

use super::{body_name, stock_request};
use crate::error::Error;
use crate::stock::{StockRequest, StockStep};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text as it may arrive: mostly short names, sometimes any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9_-]{0,16}", 1 => any::<String>()]
}

fn identifier() -> impl Strategy<Value = String> {
    "[A-Za-z0-9-]{1,64}"
}

/// An identifier stock-svc must refuse: empty, with a space or a tab, or too long.
fn bad_identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9]{1,8} [a-z0-9]{1,8}",
        "[a-z0-9]{1,8}\t",
        "[a-z0-9]{65,80}",
    ]
}

fn command(order_no: String, body: Option<Body>) -> Command {
    Command {
        saga_id: "saga-1".into(),
        order_no,
        step: "ANY".into(),
        attempt: 1,
        body,
    }
}

/// A valid stock command's body and what stock-svc reads from it.
fn stock_step() -> impl Strategy<Value = (Body, StockStep)> {
    prop_oneof![
        (1i64..=i64::MAX, identifier(), 1i32..=i32::MAX).prop_map(
            |(tier_id, user_id, quantity)| {
                (
                    Body::StockDeduct(StockDeduct {
                        tier_id,
                        user_id: user_id.clone(),
                        quantity,
                    }),
                    StockStep::Prededuct {
                        tier_id,
                        user_id,
                        quantity: i64::from(quantity),
                    },
                )
            }
        ),
        (1i64..=i64::MAX).prop_map(|tier_id| {
            (
                Body::StockConfirm(StockConfirm { tier_id }),
                StockStep::Confirm { tier_id },
            )
        }),
        (1i64..=i64::MAX).prop_map(|tier_id| {
            (
                Body::StockRollback(StockRollback { tier_id }),
                StockStep::Rollback { tier_id },
            )
        }),
        (1i64..=i64::MAX).prop_map(|tier_id| {
            (
                Body::StockSync(StockSync { tier_id }),
                StockStep::Sync { tier_id },
            )
        }),
    ]
}

/// The bodies of the other participants' commands.
fn other_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<i64>(), proptest::option::of(any::<i64>())).prop_map(
            |(unit_price_cents, seconds)| {
                Body::OrderReserve(OrderReserve {
                    unit_price_cents,
                    expire_at: seconds.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
                })
            }
        ),
        Just(Body::OrderConfirm(OrderConfirm {})),
        text().prop_map(|reason| Body::OrderCancel(OrderCancel { reason })),
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

/// Any command body, with any numbers in it.
fn any_body() -> impl Strategy<Value = Body> {
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
        other_body(),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any command is checked without panicking; one accepted is a stock step with a positive
    /// tier, travelling under the tag of its body; a refusal is `Invalid` (the participant
    /// dead-letters it, or answers `INVALID_ARGUMENT`).
    #[test]
    fn any_command_is_checked_without_panicking(
        order_no in prop_oneof![identifier(), text()],
        body in proptest::option::of(any_body()),
    ) {
        let sent = command(order_no, body);
        match stock_request(&sent) {
            Ok((request, travels_as)) => {
                let Some(body) = &sent.body else {
                    return Err(TestCaseError::fail(format!("no body, accepted as {request:?}")));
                };
                prop_assert_eq!(travels_as, body_name(body));
                prop_assert!(request.step.tier_id() > 0, "{request:?}");
                let expected = match (body, &request.step) {
                    (Body::StockDeduct(_), StockStep::Prededuct { .. }) => tag::STOCK_DEDUCT,
                    (Body::StockConfirm(_), StockStep::Confirm { .. }) => tag::STOCK_CONFIRM,
                    (Body::StockRollback(_), StockStep::Rollback { .. }) => tag::STOCK_ROLLBACK,
                    (Body::StockSync(_), StockStep::Sync { .. }) => tag::STOCK_SYNC,
                    (body, step) => {
                        return Err(TestCaseError::fail(format!(
                            "{body:?} was accepted as {step:?}"
                        )));
                    }
                };
                prop_assert_eq!(travels_as, expected);
            }
            Err(Error::Invalid(reason)) => prop_assert!(!reason.is_empty()),
            Err(other) => {
                return Err(TestCaseError::fail(format!(
                    "a malformed command is not Invalid but {other:?}"
                )));
            }
        }
    }

    /// A valid stock command is read as sent: its order, its step with every field, and the
    /// tag it must travel under.
    #[test]
    fn a_valid_stock_command_is_read_as_sent(
        order_no in identifier(),
        (body, step) in stock_step(),
    ) {
        let travels_as = body_name(&body);
        let got = stock_request(&command(order_no.clone(), Some(body)))
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(got, (StockRequest { order_no, step }, travels_as));
    }

    /// A sync concerns a tier, not an order: it is the one command taken without an order
    /// number.
    #[test]
    fn a_sync_needs_no_order(tier_id in 1i64..=i64::MAX) {
        let got = stock_request(&command(String::new(), Some(Body::StockSync(StockSync { tier_id }))))
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(
            got,
            (
                StockRequest {
                    order_no: String::new(),
                    step: StockStep::Sync { tier_id },
                },
                tag::STOCK_SYNC,
            )
        );
    }

    /// A command with one field wrong is refused as `Invalid`, and the refusal names what is
    /// wrong.
    #[test]
    fn a_command_with_a_broken_field_says_which(
        order_no in identifier(),
        bad in bad_identifier(),
        (body, _) in stock_step(),
        tier_id in i64::MIN..=0,
        quantity in i32::MIN..=0,
        other in other_body(),
        defect in 0usize..6,
    ) {
        let with_tier = |body: Body| match body {
            Body::StockDeduct(deduct) => Body::StockDeduct(StockDeduct { tier_id, ..deduct }),
            Body::StockConfirm(_) => Body::StockConfirm(StockConfirm { tier_id }),
            Body::StockRollback(_) => Body::StockRollback(StockRollback { tier_id }),
            Body::StockSync(_) => Body::StockSync(StockSync { tier_id }),
            other => other,
        };
        let deduct = |user_id: String, quantity: i32| {
            Body::StockDeduct(StockDeduct {
                tier_id: 1,
                user_id,
                quantity,
            })
        };
        let (sent, named) = match defect {
            0 => (command(order_no, Some(with_tier(body))), "tier_id".to_owned()),
            1 => (command(order_no, Some(deduct("u1".into(), quantity))), "quantity".to_owned()),
            2 => (command(order_no, Some(deduct(bad, 1))), "user_id".to_owned()),
            3 => {
                prop_assume!(!matches!(body, Body::StockSync(_)));
                (command(bad, Some(body)), "order_no".to_owned())
            }
            4 => (command(order_no, None), "no body".to_owned()),
            _ => {
                let name = body_name(&other);
                (command(order_no, Some(other)), format!("does not handle {name}"))
            }
        };
        match stock_request(&sent) {
            Err(Error::Invalid(reason)) => prop_assert!(reason.contains(&named), "{reason}"),
            Err(other) => {
                return Err(TestCaseError::fail(format!("not Invalid but {other:?}")));
            }
            Ok((request, _)) => {
                return Err(TestCaseError::fail(format!(
                    "a broken command was accepted as {request:?}"
                )));
            }
        }
    }
}

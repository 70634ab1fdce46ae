//! Properties of notify-svc's decoder of the saga's notification commands (`NOTIFY`, `SMS`,
//! `EMAIL`, `PUSH` on `NOTIFICATION_TOPIC`, or `Participant.Execute`): `NotifyCommands::check`, which the
//! platform runs on a command after decoding its body and checking its envelope (the body's
//! decoding is covered in platform/tests/decoders.rs).
//!
//! Each property runs 256 cases and writes no regression file.

use notify_svc::notifications::{NotifyCommands, template_names};
use proptest::prelude::*;
use ticket_platform::messaging::tag;
use ticket_platform::participant::CommandHandler;
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

const CHANNELS: [&str; 3] = [tag::SMS, tag::EMAIL, tag::PUSH];

/// The events notify-svc has templates for.
fn templates() -> Vec<String> {
    template_names().split(", ").map(str::to_owned).collect()
}

/// Text as it may arrive: mostly short names, sometimes any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9_-]{0,16}", 1 => any::<String>()]
}

fn identifier() -> impl Strategy<Value = String> {
    "[A-Za-z0-9-]{1,64}"
}

/// An identifier notify-svc must refuse: empty, with a space or a tab, or too long.
fn bad_identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9]{1,8} [a-z0-9]{1,8}",
        "[a-z0-9]{1,8}\t",
        "[a-z0-9]{65,80}",
    ]
}

fn channel() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(CHANNELS.to_vec())
}

fn template() -> impl Strategy<Value = String> {
    proptest::sample::select(templates())
}

fn command(order_no: String, body: Option<Body>) -> Command {
    Command {
        saga_id: "saga-1".into(),
        order_no,
        step: "NOTIFY_SMS".into(),
        attempt: 1,
        body,
    }
}

fn notify(channel: &str, user_id: String, template: String) -> Option<Body> {
    Some(Body::Notify(Notify {
        channel: channel.to_owned(),
        user_id,
        template,
        channels: Vec::new(),
    }))
}

/// The `NOTIFY` form: the channels in `channels`.
fn notify_on(channels: &[&str], user_id: String, template: String) -> Option<Body> {
    Some(Body::Notify(Notify {
        channel: String::new(),
        user_id,
        template,
        channels: channels.iter().map(|c| c.to_string()).collect(),
    }))
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
        any::<i64>().prop_map(|unit_price_cents| {
            Body::OrderReserve(OrderReserve {
                unit_price_cents,
                expire_at: None,
            })
        }),
        Just(Body::OrderConfirm(OrderConfirm {})),
        text().prop_map(|reason| Body::OrderCancel(OrderCancel { reason })),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any command is checked without panicking; one accepted is a notification for one of the
    /// known events, either on one of the three channels (by their exact names) in `channel`,
    /// travelling under its channel's tag, or on those named in `channels` (each once, all of
    /// them known), travelling as `NOTIFY`.
    #[test]
    fn any_command_is_checked_without_panicking(
        order_no in prop_oneof![identifier(), text()],
        body in proptest::option::of(prop_oneof![
            (
                prop_oneof![channel().prop_map(str::to_owned), text()],
                prop_oneof![identifier(), text()],
                prop_oneof![template(), text()],
                proptest::collection::vec(prop_oneof![channel().prop_map(str::to_owned), text()], 0..4),
                any::<bool>(),
            )
                .prop_map(|(channel, user_id, template, channels, one)| {
                    // Mostly one form or the other, sometimes both or neither.
                    let (channel, channels) = match (one, channels.len() % 3 == 0) {
                        (_, true) => (channel, channels),
                        (true, false) => (channel, Vec::new()),
                        (false, false) => (String::new(), channels),
                    };
                    Body::Notify(Notify {
                        channel,
                        user_id,
                        template,
                        channels,
                    })
                }),
            other_body(),
        ]),
    ) {
        let sent = command(order_no, body);
        match NotifyCommands.check(&sent) {
            Ok((notification, travels_as)) => {
                let Some(Body::Notify(asked)) = &sent.body else {
                    return Err(TestCaseError::fail(format!(
                        "{:?} was accepted as {notification:?}",
                        sent.body
                    )));
                };
                if asked.channels.is_empty() {
                    prop_assert!(CHANNELS.contains(&asked.channel.as_str()), "{asked:?}");
                    prop_assert_eq!(travels_as, asked.channel.as_str());
                    prop_assert_eq!(&notification.channels, &[travels_as]);
                } else {
                    prop_assert!(asked.channel.is_empty(), "{asked:?}");
                    prop_assert_eq!(travels_as, tag::NOTIFY);
                    let mut named: Vec<&str> = Vec::new();
                    for c in &asked.channels {
                        prop_assert!(CHANNELS.contains(&c.as_str()), "{asked:?}");
                        if !named.contains(&c.as_str()) {
                            named.push(c);
                        }
                    }
                    prop_assert_eq!(&notification.channels, &named);
                }
                prop_assert!(templates().contains(&asked.template), "{asked:?}");
                prop_assert_eq!(&notification.order_no, &sent.order_no);
                prop_assert_eq!(&notification.user_id, &asked.user_id);
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    /// A valid notification is read as sent: the channel it travels under, its buyer, its
    /// event, and the line the delivery log keeps naming the order.
    #[test]
    fn a_valid_notification_is_read_as_sent(
        order_no in identifier(),
        channel in channel(),
        user_id in identifier(),
        template in template(),
    ) {
        let (notification, travels_as) = NotifyCommands
            .check(&command(order_no.clone(), notify(channel, user_id.clone(), template.clone())))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(travels_as, channel);
        prop_assert_eq!(notification.channels, [channel]);
        prop_assert_eq!(notification.user_id, user_id);
        prop_assert_eq!(notification.template, template);
        prop_assert!(notification.body.contains(&order_no), "{}", notification.body);
        prop_assert_eq!(notification.order_no, order_no);
    }

    /// A notification on several channels is one `NOTIFY`, naming each channel once in the
    /// order given.
    #[test]
    fn a_notification_on_several_channels_travels_as_notify(
        order_no in identifier(),
        named in proptest::collection::vec(channel(), 1..6),
        user_id in identifier(),
        template in template(),
    ) {
        let (notification, travels_as) = NotifyCommands
            .check(&command(order_no.clone(), notify_on(&named, user_id.clone(), template)))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(travels_as, tag::NOTIFY);
        let mut once = named.clone();
        let mut seen = Vec::new();
        once.retain(|c| if seen.contains(c) { false } else { seen.push(*c); true });
        prop_assert_eq!(notification.channels, once);
        prop_assert_eq!(notification.user_id, user_id);
        prop_assert_eq!(notification.order_no, order_no);
    }

    /// A notification with one field wrong is refused, and the refusal names what is wrong:
    /// a channel not named exactly SMS, EMAIL or PUSH (lower case included), an unknown event
    /// (with the known ones listed), a bad buyer or order, another participant's command, none.
    #[test]
    fn a_notification_with_a_broken_field_says_which(
        order_no in identifier(),
        user_id in identifier(),
        template in template(),
        channel in channel(),
        bad in bad_identifier(),
        unknown in prop_oneof!["[A-Za-z_]{0,16}", any::<String>()],
        other in other_body(),
        defect in 0usize..7,
    ) {
        let (sent, expected) = match defect {
            0 => {
                prop_assume!(!CHANNELS.contains(&unknown.as_str()));
                let expected = if unknown.is_empty() {
                    "names no channel".to_owned()
                } else {
                    format!("channel {unknown:?} is not SMS, EMAIL or PUSH")
                };
                (command(order_no, notify(&unknown, user_id, template)), expected)
            }
            1 => {
                let lower = channel.to_lowercase();
                (
                    command(order_no, notify(&lower, user_id, template)),
                    format!("channel {lower:?} is not SMS, EMAIL or PUSH"),
                )
            }
            2 => {
                prop_assume!(!templates().contains(&unknown));
                (
                    command(order_no, notify(channel, user_id, unknown.clone())),
                    format!("template {unknown:?} does not exist; the templates are {}", template_names()),
                )
            }
            3 => (command(order_no, notify(channel, bad, template)), "user_id".to_owned()),
            4 => (command(bad, notify(channel, user_id, template)), "order_no".to_owned()),
            5 => (command(order_no, Some(other)), "notifications only".to_owned()),
            _ => (command(order_no, None), "no body".to_owned()),
        };
        match NotifyCommands.check(&sent) {
            Ok((notification, _)) => {
                return Err(TestCaseError::fail(format!(
                    "a broken notification was accepted as {notification:?}"
                )));
            }
            Err(reason) => prop_assert!(reason.contains(&expected), "{reason}"),
        }
    }
}

//! Properties of [`DeadLetters::entry`], which reads a dead letter from what the orchestrator
//! consumes: a `RejectedMessage` notice on `DEAD_LETTER_TOPIC`, or a message the broker moved
//! to `%DLQ%<group>`. 256 cases each, no regression file.

use proptest::prelude::*;
use prost::Message;
use prost::bytes::Bytes;
use ticket_platform::dead_letter::{self, Source};
use ticket_platform::messaging::{DLQ_PREFIX, HandleError, IncomingMessage, topic};
use ticket_proto::saga::v1::RejectedMessage;

use super::DeadLetters;

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

/// Any delivery to the dead letters' consumer: from `DEAD_LETTER_TOPIC`, from a `%DLQ%`, or
/// from anywhere, with any body.
fn delivery() -> impl Strategy<Value = IncomingMessage> {
    (
        prop_oneof![
            Just(topic::DEAD_LETTER.to_owned()),
            "[a-z-]{0,16}".prop_map(|group| format!("{DLQ_PREFIX}{group}")),
            any::<String>(),
        ],
        (text(), text(), text(), text()),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<u32>(),
            proptest::option::of(text()),
        ),
        proptest::collection::vec(any::<u8>(), 0..128),
        any::<i32>(),
        "[0-9A-F]{32}",
    )
        .prop_map(
            |(
                delivered_from,
                (topic, tag, key, message_id),
                (saga_id, step, attempt, traceparent),
                body,
                reconsume_times,
                broker_message_id,
            )| IncomingMessage {
                topic,
                tag,
                key,
                message_id,
                saga_id,
                step,
                attempt,
                traceparent,
                body: Bytes::from(body),
                reconsume_times,
                broker_message_id,
                queue_id: 0,
                delivered_from,
                stored_at_ms: 0,
            },
        )
}

/// A notice as a service's `dead_letter::reject` publishes it.
fn notice() -> impl Strategy<Value = RejectedMessage> {
    (
        (text(), text(), text(), "[0-9a-f-]{36}"),
        ("[a-z][a-z-]{0,15}", text()),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec((text(), text()), 0..4),
    )
        .prop_map(
            |((topic, tag, key, message_id), (consumer_group, reason), body, properties)| {
                RejectedMessage {
                    topic,
                    tag,
                    key,
                    message_id,
                    consumer_group,
                    reason,
                    body,
                    properties: properties.into_iter().collect(),
                }
            },
        )
}

/// The wire encoding of a field sent as a varint.
fn as_number(field: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for mut n in [u64::from(field) << 3, value] {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// Any delivery is read without panicking: a notice or a `%DLQ%` message gives an entry
    /// of its source, handled once under the notice's `message_id` or the broker's id of the
    /// landing; anything else is rejected (never retried).
    #[test]
    fn any_delivery_gives_an_entry_of_its_source_or_a_rejection(message in delivery()) {
        match DeadLetters::entry(&message) {
            Ok((entry, once)) if message.delivered_from == topic::DEAD_LETTER => {
                prop_assert_eq!(entry.source, Source::Rejected);
                prop_assert_eq!(&once, &message.message_id);
            }
            Ok((entry, once)) => {
                prop_assert!(message.delivered_from.starts_with(DLQ_PREFIX));
                prop_assert_eq!(entry.source, Source::Dlq);
                prop_assert_eq!(&once, &message.broker_message_id);
            }
            Err(HandleError::Reject(reason)) => prop_assert!(!reason.is_empty()),
            Err(HandleError::Retry(reason)) => {
                return Err(TestCaseError::fail(format!(
                    "a dead letter that cannot be read is retried: {reason}"
                )));
            }
        }
    }

    /// A notice is recorded as the rejecting service sent it.
    #[test]
    fn a_notice_is_recorded_as_it_was_sent(sent in notice(), message in delivery()) {
        let message = IncomingMessage {
            delivered_from: topic::DEAD_LETTER.to_owned(),
            body: Bytes::from(sent.encode_to_vec()),
            ..message
        };
        let (entry, once) =
            DeadLetters::entry(&message).map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(entry.consumer_group, sent.consumer_group);
        prop_assert_eq!(entry.message_id, sent.message_id);
        prop_assert_eq!(entry.topic, sent.topic);
        prop_assert_eq!(entry.tag, sent.tag);
        prop_assert_eq!(entry.key, sent.key);
        prop_assert_eq!(entry.reason, sent.reason);
        prop_assert_eq!(entry.properties, sent.properties);
        prop_assert_eq!(entry.payload, sent.body);
        prop_assert_eq!(entry.source, Source::Rejected);
        prop_assert_eq!(once, message.message_id);
    }

    /// A message the broker gave up on is recorded for the group whose `%DLQ%` it is in, with
    /// its own fields and properties and how many deliveries it had.
    #[test]
    fn a_message_the_broker_gave_up_on_is_recorded_for_its_group(
        group in "[a-z][a-z-]{0,15}",
        message in delivery(),
    ) {
        let message = IncomingMessage {
            delivered_from: format!("{DLQ_PREFIX}{group}"),
            ..message
        };
        let (entry, once) =
            DeadLetters::entry(&message).map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(&entry.consumer_group, &group);
        prop_assert_eq!(&entry.message_id, &message.message_id);
        prop_assert_eq!(&entry.topic, &message.topic);
        prop_assert_eq!(&entry.tag, &message.tag);
        prop_assert_eq!(&entry.key, &message.key);
        prop_assert_eq!(&entry.payload[..], &message.body[..]);
        prop_assert_eq!(&entry.properties, &dead_letter::properties(&message));
        prop_assert_eq!(entry.source, Source::Dlq);
        let deliveries = message.reconsume_times.saturating_add(1).to_string();
        prop_assert!(entry.reason.contains(&group), "{}", entry.reason);
        prop_assert!(entry.reason.contains(&deliveries), "{}", entry.reason);
        prop_assert_eq!(&once, &message.broker_message_id);
    }

    /// A notice with a field of the wrong wire type is rejected, naming the field.
    #[test]
    fn a_notice_with_a_broken_field_is_rejected_by_name(
        (number, name) in proptest::sample::select(vec![
            (1u32, "topic"),
            (2, "tag"),
            (3, "key"),
            (4, "message_id"),
            (5, "consumer_group"),
            (6, "reason"),
            (7, "body"),
        ]),
        value in any::<u64>(),
        sent in notice(),
        message in delivery(),
    ) {
        let mut body = sent.encode_to_vec();
        body.extend(as_number(number, value));
        let message = IncomingMessage {
            delivered_from: topic::DEAD_LETTER.to_owned(),
            body: Bytes::from(body),
            ..message
        };
        match DeadLetters::entry(&message) {
            Err(HandleError::Reject(reason)) => {
                let expected = format!("RejectedMessage.{name}: invalid wire type");
                prop_assert!(reason.contains(&expected), "{reason}");
            }
            Err(HandleError::Retry(reason)) => {
                return Err(TestCaseError::fail(format!("retried: {reason}")));
            }
            Ok((entry, _)) => {
                return Err(TestCaseError::fail(format!("accepted as {entry:?}")));
            }
        }
    }

    /// Guards against what was once so: a notice without a consumer
    /// group or a message id (any body that decodes, an empty one included), or a `%DLQ%`
    /// topic without a group, is recorded. Every such record shares the key ("", "") or
    /// (group, "") of the dead-letter table, and none can be redriven; `dead_letter::reject`
    /// never sends one, so it can only be garbage.
    #[test]
    fn a_dead_letter_without_its_group_or_id_is_rejected(
        sent in notice(),
        message in delivery(),
        defect in 0usize..3,
    ) {
        let message = match defect {
            0 => IncomingMessage {
                delivered_from: topic::DEAD_LETTER.to_owned(),
                body: Bytes::from(
                    RejectedMessage {
                        consumer_group: String::new(),
                        ..sent
                    }
                    .encode_to_vec(),
                ),
                ..message
            },
            1 => IncomingMessage {
                delivered_from: topic::DEAD_LETTER.to_owned(),
                body: Bytes::from(
                    RejectedMessage {
                        message_id: String::new(),
                        ..sent
                    }
                    .encode_to_vec(),
                ),
                ..message
            },
            _ => IncomingMessage {
                delivered_from: DLQ_PREFIX.to_owned(),
                ..message
            },
        };
        prop_assert!(
            matches!(DeadLetters::entry(&message), Err(HandleError::Reject(_))),
            "{:?}",
            DeadLetters::entry(&message).map(|(entry, _)| entry)
        );
    }
}

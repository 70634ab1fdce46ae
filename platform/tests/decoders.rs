//! Properties of the platform's decoders of consumed messages: the protobuf payload of every
//! message of the contract (`IncomingMessage::decode`), the command envelope every participant
//! checks (`participant::check_envelope`), the identifiers and instants commands carry
//! (`fields::identifier`, `time::instant`), the `traceparent` property
//! (`telemetry::trace_id_of`, `telemetry::continuing`) and the broker's topic names
//! (`Namespace::strip`).
//!
//! Each property runs 256 cases and writes no regression file.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use prost::Message;
use ticket_platform::fields::identifier;
use ticket_platform::messaging::{DLQ_PREFIX, HandleError, IncomingMessage, Namespace};
use ticket_platform::participant::{Answer, check_envelope, reply};
use ticket_platform::telemetry::{continuing, trace_id_of};
use ticket_platform::time::{instant, timestamp};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{
    Command, Notify, OrderCancel, OrderCancelled, OrderConfirm, OrderCreated, OrderPaid,
    OrderReserve, RejectedMessage, Reply, ReplyOutcome, StockConfirm, StockDeduct, StockDeducted,
    StockRollback, StockSync,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- a delivered message ----

const TOPIC: &str = "SAGA_REPLY_TOPIC";
const TAG: &str = "STOCK_DEDUCT";

/// A consumed message carrying `body`, as the consumer hands it to a handler.
fn delivered(body: Vec<u8>) -> IncomingMessage {
    IncomingMessage {
        topic: TOPIC.into(),
        tag: TAG.into(),
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
        delivered_from: TOPIC.into(),
        stored_at_ms: 0,
    }
}

/// `sent` after the trip through the broker and the consumer's decoder.
fn decoded<T: Message + Default>(sent: &T) -> Result<T, String> {
    delivered(sent.encode_to_vec())
        .decode::<T>()
        .map_err(|err| err.to_string())
}

/// The payloads of the message contract, by the names prost gives them in its errors.
#[derive(Clone, Copy, Debug)]
enum Payload {
    OrderCreated,
    OrderPaid,
    OrderCancelled,
    Command,
    Reply,
    RejectedMessage,
}

impl Payload {
    const ALL: [Self; 6] = [
        Self::OrderCreated,
        Self::OrderPaid,
        Self::OrderCancelled,
        Self::Command,
        Self::Reply,
        Self::RejectedMessage,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::OrderCreated => "OrderCreated",
            Self::OrderPaid => "OrderPaid",
            Self::OrderCancelled => "OrderCancelled",
            Self::Command => "Command",
            Self::Reply => "Reply",
            Self::RejectedMessage => "RejectedMessage",
        }
    }

    /// Decodes `message`'s body as this payload, the way the handlers do.
    fn decode(self, message: &IncomingMessage) -> Result<(), HandleError> {
        match self {
            Self::OrderCreated => message.decode::<OrderCreated>().map(|_| ()),
            Self::OrderPaid => message.decode::<OrderPaid>().map(|_| ()),
            Self::OrderCancelled => message.decode::<OrderCancelled>().map(|_| ()),
            Self::Command => message.decode::<Command>().map(|_| ()),
            Self::Reply => message.decode::<Reply>().map(|_| ()),
            Self::RejectedMessage => message.decode::<RejectedMessage>().map(|_| ()),
        }
    }
}

/// A field of a payload: (payload, field number, field name in prost's errors).
type Field = (Payload, u32, &'static str);

/// The text fields of every payload.
const TEXT_FIELDS: &[Field] = &[
    (Payload::OrderCreated, 1, "order_no"),
    (Payload::OrderCreated, 2, "user_id"),
    (Payload::OrderPaid, 1, "order_no"),
    (Payload::OrderPaid, 2, "payment_ref"),
    (Payload::OrderCancelled, 1, "order_no"),
    (Payload::OrderCancelled, 2, "reason"),
    (Payload::Command, 1, "saga_id"),
    (Payload::Command, 2, "order_no"),
    (Payload::Command, 3, "step"),
    (Payload::Reply, 1, "saga_id"),
    (Payload::Reply, 2, "order_no"),
    (Payload::Reply, 3, "step"),
    (Payload::Reply, 6, "reason"),
    (Payload::Reply, 7, "detail"),
    (Payload::RejectedMessage, 1, "topic"),
    (Payload::RejectedMessage, 2, "tag"),
    (Payload::RejectedMessage, 3, "key"),
    (Payload::RejectedMessage, 4, "message_id"),
    (Payload::RejectedMessage, 5, "consumer_group"),
    (Payload::RejectedMessage, 6, "reason"),
];

/// The other length-delimited fields: bytes, timestamps and the bodies of the oneofs (prost
/// names a oneof by its field, `body`). The map `RejectedMessage.properties` is left out: see
/// `a_properties_map_sent_as_a_number_is_rejected`.
const NESTED_FIELDS: &[Field] = &[
    (Payload::OrderCreated, 5, "created_at"),
    (Payload::OrderPaid, 4, "paid_at"),
    (Payload::OrderCancelled, 3, "cancelled_at"),
    (Payload::Command, 10, "body"),
    (Payload::Command, 11, "body"),
    (Payload::Command, 12, "body"),
    (Payload::Command, 13, "body"),
    (Payload::Command, 20, "body"),
    (Payload::Command, 21, "body"),
    (Payload::Command, 22, "body"),
    (Payload::Command, 30, "body"),
    (Payload::Reply, 10, "body"),
    (Payload::RejectedMessage, 7, "body"),
];

/// The integer fields (varints on the wire), the enum `Reply.outcome` included.
const INTEGER_FIELDS: &[Field] = &[
    (Payload::OrderCreated, 3, "tier_id"),
    (Payload::OrderCreated, 4, "quantity"),
    (Payload::OrderPaid, 3, "amount_cents"),
    (Payload::Command, 4, "attempt"),
    (Payload::Reply, 4, "attempt"),
    (Payload::Reply, 5, "outcome"),
];

fn length_delimited_field() -> impl Strategy<Value = Field> {
    proptest::sample::select([TEXT_FIELDS, NESTED_FIELDS].concat())
}

/// Why the consumer rejects `body` as `payload`; a test failure when it accepts or retries it.
fn rejection(payload: Payload, body: Vec<u8>) -> Result<String, TestCaseError> {
    match payload.decode(&delivered(body)) {
        Err(HandleError::Reject(reason)) => Ok(reason),
        Err(HandleError::Retry(reason)) => Err(TestCaseError::fail(format!(
            "a malformed {} is retried instead of rejected: {reason}",
            payload.name()
        ))),
        Ok(()) => Err(TestCaseError::fail(format!(
            "a malformed {} is accepted",
            payload.name()
        ))),
    }
}

// ---- the protobuf wire, written by hand to break it ----

const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(field: u32, wire_type: u64, out: &mut Vec<u8>) {
    varint((u64::from(field) << 3) | wire_type, out);
}

/// A length-delimited `field` whose stated length is `stated` (the length of `content` when
/// the field is whole).
fn delimited(field: u32, stated: usize, content: &[u8], out: &mut Vec<u8>) {
    key(field, LENGTH_DELIMITED, out);
    varint(stated as u64, out);
    out.extend_from_slice(content);
}

/// A well-formed start of any payload: its field 1, which is text in every one of them.
fn well_formed_start(text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    delimited(1, text.len(), text.as_bytes(), &mut body);
    body
}

// ---- payloads as they may be sent ----

/// Text as it may arrive: mostly short names, sometimes any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9_-]{0,16}", 1 => any::<String>()]
}

fn wire_timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    proptest::option::of(
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
}

fn order_created() -> impl Strategy<Value = OrderCreated> {
    (text(), text(), any::<i64>(), any::<i32>(), wire_timestamp()).prop_map(
        |(order_no, user_id, tier_id, quantity, created_at)| OrderCreated {
            order_no,
            user_id,
            tier_id,
            quantity,
            created_at,
        },
    )
}

fn order_paid() -> impl Strategy<Value = OrderPaid> {
    (text(), text(), any::<i64>(), wire_timestamp()).prop_map(
        |(order_no, payment_ref, amount_cents, paid_at)| OrderPaid {
            order_no,
            payment_ref,
            amount_cents,
            paid_at,
        },
    )
}

fn order_cancelled() -> impl Strategy<Value = OrderCancelled> {
    (text(), text(), wire_timestamp()).prop_map(|(order_no, reason, cancelled_at)| OrderCancelled {
        order_no,
        reason,
        cancelled_at,
    })
}

fn command_body() -> impl Strategy<Value = Body> {
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
        (any::<i64>(), wire_timestamp()).prop_map(|(unit_price_cents, expire_at)| {
            Body::OrderReserve(OrderReserve {
                unit_price_cents,
                expire_at,
            })
        }),
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

fn command() -> impl Strategy<Value = Command> {
    (
        text(),
        text(),
        text(),
        any::<u32>(),
        proptest::option::of(command_body()),
    )
        .prop_map(|(saga_id, order_no, step, attempt, body)| Command {
            saga_id,
            order_no,
            step,
            attempt,
            body,
        })
}

/// An outcome as it may arrive: mostly a known one, sometimes any number.
fn raw_outcome() -> impl Strategy<Value = i32> {
    prop_oneof![3 => 0..=3i32, 1 => any::<i32>()]
}

fn reply_message() -> impl Strategy<Value = Reply> {
    (
        text(),
        text(),
        text(),
        any::<u32>(),
        raw_outcome(),
        text(),
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
            |(saga_id, order_no, step, attempt, outcome, reason, detail, body)| Reply {
                saga_id,
                order_no,
                step,
                attempt,
                outcome,
                reason,
                detail,
                body,
            },
        )
}

fn rejected_message() -> impl Strategy<Value = RejectedMessage> {
    (
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec((text(), text()), 0..4),
    )
        .prop_map(
            |(topic, tag, key, message_id, consumer_group, reason, body, properties)| {
                RejectedMessage {
                    topic,
                    tag,
                    key,
                    message_id,
                    consumer_group,
                    reason,
                    body,
                    properties: properties.into_iter().collect::<HashMap<_, _>>(),
                }
            },
        )
}

// ---- instants and trace context ----

/// The seconds of protobuf's `Timestamp` range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const FIRST_SECOND: i64 = -62_135_596_800;
const LAST_SECOND: i64 = 253_402_300_799;

/// `len` lower-case hex digits, not all zero (a valid W3C trace or span id).
fn nonzero_hex(len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}"))
        .expect("a valid pattern")
        .prop_filter("a trace or span id is not all zero", |hex| {
            hex.chars().any(|c| c != '0')
        })
}

fn namespace() -> impl Strategy<Value = Namespace> {
    "[A-Za-z0-9_-]{0,8}".prop_map(|prefix| Namespace::new(&prefix).expect("a valid namespace"))
}

proptest! {
    #![proptest_config(config())]

    // ---- IncomingMessage::decode: any bytes ----

    /// Whatever the body, the decoder answers a value or a rejection (never a retry, which
    /// would redeliver it forever) that names the topic, the tag and the payload it expected.
    #[test]
    fn any_bytes_decode_or_are_rejected_naming_the_payload(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        payload in proptest::sample::select(Payload::ALL.to_vec()),
    ) {
        match payload.decode(&delivered(body)) {
            Ok(()) => {}
            Err(HandleError::Reject(reason)) => {
                let expected = format!(
                    "payload of {TOPIC}/{TAG} is not a valid {}",
                    payload.name()
                );
                prop_assert!(reason.contains(&expected), "{reason}");
            }
            Err(HandleError::Retry(reason)) => {
                return Err(TestCaseError::fail(format!(
                    "an undecodable payload is retried: {reason}"
                )));
            }
        }
    }

    // ---- IncomingMessage::decode: every payload round-trips ----

    #[test]
    fn an_order_created_arrives_as_sent(sent in order_created()) {
        prop_assert_eq!(decoded(&sent), Ok(sent.clone()));
    }

    #[test]
    fn an_order_paid_arrives_as_sent(sent in order_paid()) {
        prop_assert_eq!(decoded(&sent), Ok(sent.clone()));
    }

    #[test]
    fn an_order_cancelled_arrives_as_sent(sent in order_cancelled()) {
        prop_assert_eq!(decoded(&sent), Ok(sent.clone()));
    }

    #[test]
    fn a_command_arrives_as_sent(sent in command()) {
        prop_assert_eq!(decoded(&sent), Ok(sent.clone()));
    }

    #[test]
    fn a_reply_arrives_as_sent(sent in reply_message()) {
        prop_assert_eq!(decoded(&sent), Ok(sent.clone()));
    }

    #[test]
    fn a_rejected_message_arrives_as_sent(sent in rejected_message()) {
        prop_assert_eq!(decoded(&sent), Ok(sent.clone()));
    }

    /// The reply a participant builds (`participant::reply`) carries its command's saga, order,
    /// step and attempt, the key the orchestrator deduplicates replies on.
    #[test]
    fn a_reply_answers_its_command(
        command in command(),
        refused in any::<bool>(),
        reason in "[A-Z_]{1,16}",
        detail in text(),
    ) {
        let answer = if refused {
            Answer::refused(&reason, detail)
        } else {
            Answer::ok(detail, None)
        };
        let sent = reply(&command, answer);
        let got = decoded(&sent).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&got.saga_id, &command.saga_id);
        prop_assert_eq!(&got.order_no, &command.order_no);
        prop_assert_eq!(&got.step, &command.step);
        prop_assert_eq!(got.attempt, command.attempt);
        let outcome = if refused { ReplyOutcome::Refused } else { ReplyOutcome::Ok };
        prop_assert_eq!(got.outcome(), outcome);
    }

    // ---- IncomingMessage::decode: valid encodings with one field broken ----

    /// A strict prefix of a payload (a body cut short) never passes for the whole payload.
    #[test]
    fn a_cut_command_never_passes_for_the_whole(sent in command(), cut in any::<usize>()) {
        let body = sent.encode_to_vec();
        prop_assume!(!body.is_empty());
        let cut = cut % body.len();
        let got = delivered(body[..cut].to_vec()).decode::<Command>().ok();
        prop_assert_ne!(got, Some(sent));
    }

    #[test]
    fn a_cut_reply_never_passes_for_the_whole(sent in reply_message(), cut in any::<usize>()) {
        let body = sent.encode_to_vec();
        prop_assume!(!body.is_empty());
        let cut = cut % body.len();
        let got = delivered(body[..cut].to_vec()).decode::<Reply>().ok();
        prop_assert_ne!(got, Some(sent));
    }

    #[test]
    fn a_cut_rejected_message_never_passes_for_the_whole(
        sent in rejected_message(),
        cut in any::<usize>(),
    ) {
        let body = sent.encode_to_vec();
        prop_assume!(!body.is_empty());
        let cut = cut % body.len();
        let got = delivered(body[..cut].to_vec()).decode::<RejectedMessage>().ok();
        prop_assert_ne!(got, Some(sent));
    }

    /// A text, bytes or message field sent as a number (wrong wire type) is rejected, and the
    /// reason names the payload and the field.
    #[test]
    fn a_length_delimited_field_sent_as_a_number_is_rejected_by_name(
        (payload, number, name) in length_delimited_field(),
        start in "[A-Za-z0-9]{0,12}",
        value in any::<u64>(),
    ) {
        let mut body = well_formed_start(&start);
        key(number, VARINT, &mut body);
        varint(value, &mut body);
        let reason = rejection(payload, body)?;
        let expected = format!("{}.{name}: invalid wire type", payload.name());
        prop_assert!(reason.contains(&expected), "{reason}");
    }

    /// A number sent as text (wrong wire type) is rejected, naming the payload and the field.
    #[test]
    fn a_number_sent_as_text_is_rejected_by_name(
        (payload, number, name) in proptest::sample::select(INTEGER_FIELDS.to_vec()),
        start in "[A-Za-z0-9]{0,12}",
        content in "[0-9]{0,12}",
    ) {
        let mut body = well_formed_start(&start);
        delimited(number, content.len(), content.as_bytes(), &mut body);
        let reason = rejection(payload, body)?;
        let expected = format!("{}.{name}: invalid wire type", payload.name());
        prop_assert!(reason.contains(&expected), "{reason}");
    }

    /// A text field that is not UTF-8 is rejected, naming the payload and the field. The bytes
    /// F5 to FF occur nowhere in UTF-8.
    #[test]
    fn a_text_field_that_is_not_utf8_is_rejected_by_name(
        (payload, number, name) in proptest::sample::select(TEXT_FIELDS.to_vec()),
        before in proptest::collection::vec(0u8..0x80, 0..8),
        foreign in 0xF5u8..=0xFF,
        after in proptest::collection::vec(0u8..0x80, 0..8),
    ) {
        let content = [before, vec![foreign], after].concat();
        let mut body = Vec::new();
        delimited(number, content.len(), &content, &mut body);
        let reason = rejection(payload, body)?;
        let expected = format!("{}.{name}: invalid string value", payload.name());
        prop_assert!(reason.contains(&expected), "{reason}");
        prop_assert!(reason.contains("UTF-8"), "{reason}");
    }

    /// A length-delimited field whose content stops short of its stated length is rejected,
    /// naming the payload and the field.
    #[test]
    fn a_truncated_field_is_rejected_by_name(
        (payload, number, name) in length_delimited_field(),
        content in proptest::collection::vec(0x20u8..0x7F, 1..32),
        missing in any::<usize>(),
    ) {
        let missing = 1 + missing % content.len();
        let mut body = Vec::new();
        delimited(number, content.len(), &content[..content.len() - missing], &mut body);
        let reason = rejection(payload, body)?;
        let expected = format!("{}.{name}: buffer underflow", payload.name());
        prop_assert!(reason.contains(&expected), "{reason}");
    }

    /// A number longer than any 64-bit varint (ten bytes, each saying more follow) is rejected,
    /// naming the payload and the field.
    #[test]
    fn an_overlong_number_is_rejected_by_name(
        (payload, number, name) in proptest::sample::select(INTEGER_FIELDS.to_vec()),
        digits in proptest::collection::vec(0x80u8..=0xFF, 10..12),
    ) {
        let mut body = Vec::new();
        key(number, VARINT, &mut body);
        body.extend_from_slice(&digits);
        let reason = rejection(payload, body)?;
        let expected = format!("{}.{name}: invalid varint", payload.name());
        prop_assert!(reason.contains(&expected), "{reason}");
    }

    /// Fields this version does not know (added by a newer sender) are skipped: the rest of
    /// the payload arrives as sent.
    #[test]
    fn unknown_fields_are_skipped(
        sent in reply_message(),
        command in command(),
        number in 100u32..=1000,
        as_number in any::<bool>(),
        value in any::<u64>(),
        content in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let unknown = |body: &mut Vec<u8>| {
            if as_number {
                key(number, VARINT, body);
                varint(value, body);
            } else {
                delimited(number, content.len(), &content, body);
            }
        };
        let mut body = sent.encode_to_vec();
        unknown(&mut body);
        prop_assert_eq!(
            delivered(body).decode::<Reply>().map_err(|err| err.to_string()),
            Ok(sent.clone())
        );
        let mut body = command.encode_to_vec();
        unknown(&mut body);
        prop_assert_eq!(
            delivered(body).decode::<Command>().map_err(|err| err.to_string()),
            Ok(command.clone())
        );
    }

    /// An outcome this version does not know is kept as its number, and the typed accessor
    /// reads it as `UNSPECIFIED`, never as OK, REFUSED or FAILED (the orchestrator retries on
    /// it; see orchestrator/tests/decoders.rs).
    #[test]
    fn an_unknown_outcome_is_never_read_as_a_known_one(sent in reply_message(), raw in any::<i32>()) {
        prop_assume!(ReplyOutcome::try_from(raw).is_err());
        let sent = Reply { outcome: raw, ..sent };
        let got = decoded(&sent).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got.outcome, raw);
        prop_assert_eq!(got.outcome(), ReplyOutcome::Unspecified);
    }

    // ---- participant::check_envelope ----

    /// A command passes the envelope check exactly when it has a saga and a step that can be
    /// a tag (1 to 64 ASCII letters, digits, `_`, `-`); a refusal says which is wrong.
    #[test]
    fn the_envelope_needs_a_saga_and_a_step_name(
        saga_id in prop_oneof![Just(String::new()), "[ \t\n]{1,3}", text()],
        step in prop_oneof!["[A-Za-z0-9_-]{1,64}", "[A-Za-z0-9_-]{65,70}", any::<String>()],
        body in proptest::option::of(command_body()),
    ) {
        let command = Command {
            saga_id: saga_id.clone(),
            order_no: "T1".into(),
            step: step.clone(),
            attempt: 1,
            body,
        };
        let has_saga = !saga_id.trim().is_empty();
        let named = !step.is_empty()
            && step.len() <= 64
            && step.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match check_envelope(&command) {
            Ok(()) => prop_assert!(has_saga && named),
            Err(reason) if !has_saga => prop_assert!(reason.contains("saga_id"), "{reason}"),
            Err(reason) => {
                prop_assert!(!named, "{reason}");
                prop_assert!(reason.contains("step"), "{reason}");
            }
        }
    }

    // ---- fields::identifier ----

    /// An identifier is accepted exactly when it is non-empty, at most `max` characters and
    /// without spaces or control characters; it is then returned unchanged, and a refusal
    /// starts with the field's name.
    #[test]
    fn an_identifier_is_a_short_word_returned_as_given(
        value in prop_oneof!["[A-Za-z0-9_-]{0,70}", any::<String>()],
        max in 0usize..80,
    ) {
        let word = !value.is_empty()
            && value.chars().count() <= max
            && !value.chars().any(|c| c.is_whitespace() || c.is_control());
        match identifier("order_no", &value, max) {
            Ok(accepted) => {
                prop_assert!(word);
                prop_assert_eq!(accepted, value);
            }
            Err(reason) => {
                prop_assert!(!word);
                prop_assert!(reason.starts_with("order_no "), "{reason}");
            }
        }
    }

    // ---- time::instant ----

    /// Every instant of protobuf's range survives the trip to a `Timestamp` and back, to the
    /// nanosecond.
    #[test]
    fn an_instant_survives_its_timestamp(
        seconds in FIRST_SECOND..=LAST_SECOND,
        nanos in 0u32..1_000_000_000,
    ) {
        let at = DateTime::<Utc>::from_timestamp(seconds, nanos).expect("within chrono's range");
        prop_assert_eq!(instant(&timestamp(at)), Some(at));
    }

    /// Any `Timestamp` names the instant it says or none; negative nanoseconds name none.
    #[test]
    fn any_timestamp_names_what_it_says_or_nothing(
        seconds in prop_oneof![any::<i64>(), FIRST_SECOND..=LAST_SECOND],
        nanos in prop_oneof![any::<i32>(), 0..1_000_000_000i32, i32::MIN..0],
    ) {
        let sent = prost_types::Timestamp { seconds, nanos };
        if let Some(at) = instant(&sent) {
            prop_assert!(nanos >= 0);
            prop_assert_eq!(at.timestamp(), seconds);
            prop_assert_eq!(i64::from(at.timestamp_subsec_nanos()), i64::from(nanos));
        }
    }

    /// Guards against what was once so: chrono reads 1e9..2e9 nanoseconds at second
    /// :59 as a leap second, so `instant` accepts a `Timestamp` protobuf calls invalid (nanos
    /// must be 0..=999,999,999); order-svc takes it as an ORDER_RESERVE's `expire_at`.
    #[test]
    fn a_second_or_more_of_nanoseconds_names_no_instant(
        minute in (FIRST_SECOND / 60)..(LAST_SECOND / 60),
        nanos in 1_000_000_000i32..=i32::MAX,
    ) {
        let sent = prost_types::Timestamp { seconds: minute * 60 + 59, nanos };
        prop_assert_eq!(instant(&sent), None);
    }

    // ---- telemetry::trace_id_of, telemetry::continuing ----

    /// A well-formed `traceparent` names its trace id.
    #[test]
    fn a_traceparent_names_its_trace(
        trace_id in nonzero_hex(32),
        span_id in nonzero_hex(16),
        flags in "[0-9a-f]{2}",
    ) {
        let traceparent = format!("00-{trace_id}-{span_id}-{flags}");
        prop_assert_eq!(trace_id_of(&traceparent), Some(trace_id));
    }

    /// A `traceparent` with an all-zero id, another version or a short id names no trace.
    #[test]
    fn a_malformed_traceparent_names_no_trace(
        trace_id in nonzero_hex(32),
        span_id in nonzero_hex(16),
        version in "[0-9a-f]{2}",
        defect in 0usize..5,
    ) {
        let traceparent = match defect {
            0 => format!("00-{}-{span_id}-01", "0".repeat(32)),
            1 => format!("00-{trace_id}-{}-01", "0".repeat(16)),
            2 => {
                prop_assume!(version != "00");
                format!("{version}-{trace_id}-{span_id}-01")
            }
            3 => format!("00-{}-{span_id}-01", &trace_id[1..]),
            _ => format!("00-{trace_id}-{span_id}"),
        };
        prop_assert!(
            trace_id_of(&traceparent).is_none(),
            "{traceparent} names the trace {:?}",
            trace_id_of(&traceparent)
        );
    }

    /// Any text in the `traceparent` property is read without panicking, by both readers.
    #[test]
    fn any_traceparent_is_read_without_panicking(traceparent in any::<String>()) {
        if let Some(trace_id) = trace_id_of(&traceparent) {
            prop_assert_eq!(trace_id.len(), 32);
        }
        drop(continuing(tracing::Span::none(), Some(&traceparent)));
    }

    /// Guards against what was once so: the ids are parsed with
    /// `from_str_radix`, which takes a leading `+` and upper-case digits, so `parse` accepts
    /// what W3C Trace Context calls invalid (ids are lower-case hex digits only) and continues
    /// a trace from it; the OpenTelemetry SDK's propagator refuses the upper-case ones.
    #[test]
    fn only_lower_case_hex_names_a_trace(
        trace_id in nonzero_hex(32),
        span_id in nonzero_hex(16),
        defect in 0usize..3,
    ) {
        let traceparent = match defect {
            0 => format!("00-+{}-{span_id}-01", &trace_id[1..]),
            1 => format!("00-{trace_id}-+{}-01", &span_id[1..]),
            _ => {
                prop_assume!(trace_id.chars().any(|c| c.is_ascii_alphabetic()));
                format!("00-{}-{span_id}-01", trace_id.to_uppercase())
            }
        };
        prop_assert!(
            trace_id_of(&traceparent).is_none(),
            "{traceparent} names the trace {:?}",
            trace_id_of(&traceparent)
        );
    }

    // ---- Namespace::strip ----

    /// A delivered topic's broker name reads back as the logical name it was qualified from,
    /// `%DLQ%<group>` included; any broker name is read without panicking.
    #[test]
    fn a_broker_topic_reads_back_as_its_logical_name(
        ns in namespace(),
        name in prop_oneof![
            "[A-Z_]{1,20}",
            "[a-z-]{1,20}".prop_map(|group| format!("{DLQ_PREFIX}{group}")),
            any::<String>(),
        ],
        foreign in any::<String>(),
    ) {
        prop_assert_eq!(ns.strip(&ns.qualify(&name)), name);
        let _ = ns.strip(&foreign);
    }

    /// Guards against what was once so: `strip` takes the namespace off
    /// `%DLQ%<group>` but not off `%RETRY%<group>`, so a redelivered message's `delivered_from`
    /// keeps the namespace, though `IncomingMessage::delivered_from` says it has none.
    #[test]
    fn a_retry_topic_names_its_group_without_the_namespace(
        ns in namespace(),
        group in "[a-z][a-z-]{0,15}",
    ) {
        prop_assume!(!ns.prefix().is_empty());
        let delivered_from = ns.strip(&format!("%RETRY%{}", ns.qualify(&group)));
        prop_assert_eq!(delivered_from, format!("%RETRY%{group}"));
    }

    // ---- the map of RejectedMessage (prost) ----

    /// `RejectedMessage.properties` (a map) sent as a number is rejected, naming the field.
    #[test]
    fn a_properties_map_sent_as_a_number_is_rejected(start in "[A-Za-z0-9]{0,12}") {
        let mut body = well_formed_start(&start);
        key(8, VARINT, &mut body);
        varint(0, &mut body);
        let reason = rejection(Payload::RejectedMessage, body)?;
        prop_assert!(reason.contains("RejectedMessage.properties"), "{reason}");
    }
}

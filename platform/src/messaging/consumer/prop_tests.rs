//! Properties of [`incoming`], the consumer's decoder of a delivered `MessageExt`: the
//! contract's properties (`message_id`, `saga_id`, `step`, `attempt`, `traceparent`), the
//! broker's (`KEYS`, `TAGS`, `RETRY_TOPIC`), the body and the delivery's own facts, as the
//! publisher sent them and as anything else may arrive. 256 cases each, no regression file.

use std::collections::HashMap;

use bytes::Bytes;
use cheetah_string::CheetahString;
use proptest::prelude::*;
use rocketmq_model::codec::{message_properties_to_string, string_to_message_properties};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use uuid::Uuid;

use super::incoming;
use crate::messaging::{Namespace, OutgoingMessage, property};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The broker's id of a delivery (new on every send).
const BROKER_ID: &str = "7F000001000078C60000000000000001";

/// The properties of `message` after the client's codec (`name\u{1}value\u{2}...`), as a
/// consumer in another process receives them.
fn over_the_wire(message: &mut Message) {
    let text = message_properties_to_string(message.properties().as_map());
    message.set_properties(string_to_message_properties(Some(&text)));
}

/// `outgoing` as `ns`'s consumer receives it: built by the publisher's `to_message`, its
/// properties through the wire codec.
fn delivered(ns: &Namespace, outgoing: &OutgoingMessage) -> MessageExt {
    let mut message =
        crate::messaging::publisher::to_message(&ns.qualify(&outgoing.topic), outgoing)
            .expect("a message the publisher sends");
    over_the_wire(&mut message);
    MessageExt {
        message,
        msg_id: CheetahString::from(BROKER_ID),
        ..MessageExt::default()
    }
}

/// Sets one property of a delivery, as a foreign or broken sender might.
fn with_property(delivery: &mut MessageExt, name: &str, value: &str) {
    let mut properties = delivery.message.properties().as_map().clone();
    properties.insert(CheetahString::from(name), CheetahString::from(value));
    delivery.message.set_properties(properties);
}

fn namespace() -> impl Strategy<Value = Namespace> {
    "[A-Za-z0-9_-]{0,8}".prop_map(|prefix| Namespace::new(&prefix).expect("a valid namespace"))
}

fn traceparent() -> impl Strategy<Value = String> {
    ("[0-9a-f]{32}", "[0-9a-f]{16}", "0[01]")
        .prop_map(|(trace_id, span_id, flags)| format!("00-{trace_id}-{span_id}-{flags}"))
}

/// A message the publisher would send (it passes `OutgoingMessage::validate`).
fn published() -> impl Strategy<Value = OutgoingMessage> {
    (
        "[A-Z][A-Z_]{0,19}",
        "[A-Z][A-Z_]{0,19}",
        "[A-Za-z0-9-]{0,24}",
        any::<u128>(),
        proptest::option::of("[a-z0-9-]{1,36}"),
        proptest::option::of("[A-Z_]{1,24}"),
        any::<u32>(),
        proptest::option::of(traceparent()),
        proptest::collection::vec(any::<u8>(), 1..64),
    )
        .prop_map(
            |(topic, tag, key, id, saga_id, step, attempt, traceparent, payload)| OutgoingMessage {
                topic,
                tag,
                key,
                message_id: Uuid::from_u128(id),
                saga_id,
                step,
                attempt,
                traceparent,
                payload,
            },
        )
}

/// A property name: mostly one `incoming` reads, sometimes any text.
fn property_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "KEYS",
            "TAGS",
            "RETRY_TOPIC",
            property::MESSAGE_ID,
            property::SAGA_ID,
            property::STEP,
            property::ATTEMPT,
            property::TRACEPARENT,
        ])
        .prop_map(|name| name.to_owned()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// What the publisher sends arrives with every field of the contract as it was sent, the
    /// namespace taken off its topic.
    #[test]
    fn what_the_publisher_sends_arrives_as_sent(
        ns in namespace(),
        sent in published(),
        reconsume_times in 0i32..16,
        queue_id in 0i32..8,
        stored_at_ms in any::<i64>(),
    ) {
        prop_assert!(sent.validate().is_ok(), "{:?}", sent.validate());
        let mut delivery = delivered(&ns, &sent);
        delivery.reconsume_times = reconsume_times;
        delivery.queue_id = queue_id;
        delivery.store_timestamp = stored_at_ms;
        let got = incoming(&ns, &delivery);
        prop_assert_eq!(&got.topic, &sent.topic);
        prop_assert_eq!(&got.tag, &sent.tag);
        prop_assert_eq!(&got.key, &sent.key);
        prop_assert_eq!(got.message_id, sent.message_id.to_string());
        prop_assert_eq!(&got.saga_id, &sent.saga_id);
        prop_assert_eq!(&got.step, &sent.step);
        prop_assert_eq!(got.attempt, sent.attempt);
        prop_assert_eq!(&got.traceparent, &sent.traceparent);
        prop_assert_eq!(&got.body[..], &sent.payload[..]);
        prop_assert_eq!(got.reconsume_times, reconsume_times);
        prop_assert_eq!(got.broker_message_id, BROKER_ID);
        prop_assert_eq!(got.queue_id, queue_id);
        prop_assert_eq!(&got.delivered_from, &sent.topic);
        prop_assert_eq!(got.stored_at_ms, stored_at_ms);
    }

    /// A message the broker redelivers from `%RETRY%<group>` is read under the topic it was
    /// sent to (its `RETRY_TOPIC` property), not the retry topic.
    #[test]
    fn a_redelivered_message_keeps_the_topic_it_was_sent_to(
        ns in namespace(),
        sent in published(),
        group in "[a-z][a-z-]{0,15}",
    ) {
        let mut delivery = delivered(&ns, &sent);
        with_property(&mut delivery, "RETRY_TOPIC", &ns.qualify(&sent.topic));
        delivery
            .message
            .set_topic(CheetahString::from(format!("%RETRY%{}", ns.qualify(&group))));
        let got = incoming(&ns, &delivery);
        prop_assert_eq!(&got.topic, &sent.topic);
        prop_assert_eq!(got.message_id, sent.message_id.to_string());
        prop_assert!(got.delivered_from.starts_with("%RETRY%"), "{}", got.delivered_from);
    }

    /// Any delivery, whatever its topic, properties and body, is read without panicking: each
    /// field from its property, the documented fallback when the property is missing.
    #[test]
    fn any_delivery_is_read_by_its_properties(
        ns in namespace(),
        topic in any::<String>(),
        properties in proptest::collection::vec((property_name(), any::<String>()), 0..8),
        body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        msg_id in any::<String>(),
        reconsume_times in any::<i32>(),
    ) {
        let properties: HashMap<String, String> = properties.into_iter().collect();
        let mut delivery = MessageExt {
            msg_id: CheetahString::from(msg_id.as_str()),
            reconsume_times,
            ..MessageExt::default()
        };
        delivery.message.set_topic(CheetahString::from(topic.as_str()));
        delivery.message.set_properties(
            properties
                .iter()
                .map(|(name, value)| {
                    (CheetahString::from(name.as_str()), CheetahString::from(value.as_str()))
                })
                .collect(),
        );
        delivery.message.set_body(body.clone().map(Bytes::from));
        let got = incoming(&ns, &delivery);
        let sent = |name: &str| properties.get(name).cloned();
        let sent_topic = sent("RETRY_TOPIC").unwrap_or_else(|| topic.clone());
        prop_assert_eq!(got.topic, ns.strip(&sent_topic));
        prop_assert_eq!(got.tag, sent("TAGS").unwrap_or_default());
        prop_assert_eq!(got.key, sent("KEYS").unwrap_or_default());
        prop_assert_eq!(
            got.message_id,
            sent(property::MESSAGE_ID)
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| msg_id.clone())
        );
        prop_assert_eq!(got.saga_id, sent(property::SAGA_ID));
        prop_assert_eq!(got.step, sent(property::STEP));
        prop_assert_eq!(got.traceparent, sent(property::TRACEPARENT));
        if let Some(attempt) = sent(property::ATTEMPT).and_then(|a| a.parse::<u32>().ok()) {
            prop_assert_eq!(got.attempt, attempt);
        }
        prop_assert_eq!(&got.body[..], body.as_deref().unwrap_or_default());
        prop_assert_eq!(got.reconsume_times, reconsume_times);
        prop_assert_eq!(got.broker_message_id, msg_id);
        prop_assert_eq!(got.delivered_from, ns.strip(&topic));
    }

    /// Guards against what was once so: an empty `message_id`
    /// property is taken as the message's id instead of the broker's, so the inbox, keyed on
    /// (group, message_id), takes every such message after the first for a duplicate and skips
    /// it.
    #[test]
    fn every_delivery_has_a_message_id_to_deduplicate_on(ns in namespace(), sent in published()) {
        let mut delivery = delivered(&ns, &sent);
        with_property(&mut delivery, property::MESSAGE_ID, "");
        prop_assert!(!incoming(&ns, &delivery).message_id.is_empty());
    }
}

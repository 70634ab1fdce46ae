//! Publishes messages of the message contract. All messages of one order go to one queue (hash
//! of the order number), so a consumer sees them in order; batches are split per queue and sent
//! with one request each, because the broker's throughput is per request, not per byte.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cheetah_string::CheetahString;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use tokio::sync::RwLock;

use super::envelope::{OutgoingMessage, property};
use super::{MessagingError, MessagingRuntime};
use crate::metrics::SentLabels;

/// How long a topic's queue list is trusted before it is fetched again.
const QUEUE_CACHE_TTL: Duration = Duration::from_secs(10);
/// A single send request carries at most this many messages.
const MAX_BATCH: usize = 64;

/// A RocketMQ producer for one service.
pub struct Publisher {
    runtime: Arc<MessagingRuntime>,
    producer: RwLock<DefaultMQProducer>,
    queues: RwLock<HashMap<String, (Instant, Vec<MessageQueue>)>>,
    /// Test switch: send every message twice, as a broker redelivery would.
    duplicate_deliveries: AtomicBool,
}

impl Publisher {
    /// Starts a producer in `group` (a logical name; the namespace is added).
    pub async fn start(
        runtime: Arc<MessagingRuntime>,
        group: &str,
    ) -> Result<Self, MessagingError> {
        let config = runtime.config();
        let group_name = config.namespace.qualify(group);
        let mut producer = DefaultMQProducer::builder(runtime.client())
            .client_config(config.client_config())
            .producer_group(group_name.clone())
            .send_msg_timeout(u32::try_from(config.send_timeout.as_millis()).unwrap_or(u32::MAX))
            .retry_times_when_send_failed(1)
            .default_topic_queue_nums(config.topic_queues)
            .build();
        producer
            .start()
            .await
            .map_err(|err| MessagingError::Publish {
                topic: "-".into(),
                reason: format!("producer {group_name} did not start: {err}"),
            })?;
        Ok(Self {
            runtime,
            producer: RwLock::new(producer),
            queues: RwLock::new(HashMap::new()),
            duplicate_deliveries: AtomicBool::new(false),
        })
    }

    /// Makes every later send go out twice (tests of idempotent consumers).
    pub fn set_duplicate_deliveries(&self, on: bool) {
        self.duplicate_deliveries.store(on, Ordering::Relaxed);
    }

    /// Creates the (logical) topics on the broker, so consumers can subscribe before the first
    /// message is sent. Creating an existing topic changes nothing.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<(), MessagingError> {
        let mut producer = self.producer.write().await;
        for topic in topics {
            let name = self.runtime.config().namespace.qualify(topic);
            create_topic(&mut producer, &name, self.runtime.config().topic_queues).await?;
        }
        Ok(())
    }

    /// Sends one message to its order's queue and waits for the broker's answer.
    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), MessagingError> {
        self.publish_batch(std::slice::from_ref(message)).await
    }

    /// Sends messages grouped per (topic, queue), one request per group of up to 64. Either
    /// every message was accepted by the broker, or an error says which topic failed (some
    /// groups may have been sent: the caller retries all, and inboxes deduplicate). Every
    /// message is counted with the outcome (`mq_messages_sent_total`): a failed batch, whatever
    /// failed (the route, the request), counts each of its messages as an error.
    pub async fn publish_batch(&self, messages: &[OutgoingMessage]) -> Result<(), MessagingError> {
        let result = self.send_batch(messages).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        for outgoing in messages {
            self.runtime
                .metrics()
                .sent
                .get_or_create(&SentLabels {
                    topic: outgoing.topic.clone(),
                    tag: outgoing.tag.clone(),
                    outcome,
                })
                .inc();
        }
        result
    }

    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<(), MessagingError> {
        for outgoing in messages {
            outgoing.validate()?;
        }
        let mut groups: BTreeMap<(String, i32), (MessageQueue, Vec<Message>)> = BTreeMap::new();
        for outgoing in messages {
            let topic = self.runtime.config().namespace.qualify(&outgoing.topic);
            let queue = self.queue_for(&topic, &outgoing.key).await?;
            let entry = groups
                .entry((topic.clone(), queue.queue_id()))
                .or_insert_with(|| (queue, Vec::new()));
            let copies = if self.duplicate_deliveries.load(Ordering::Relaxed) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                entry.1.push(to_message(&topic, outgoing)?);
            }
        }
        let producer = self.producer.read().await;
        let timeout =
            u64::try_from(self.runtime.config().send_timeout.as_millis()).unwrap_or(u64::MAX);
        // Queues are independent: their requests go out together; within a queue, in order.
        let sends = groups.into_iter().map(|((topic, _), (queue, messages))| {
            let producer = &*producer;
            async move {
                let mut rest = messages;
                while !rest.is_empty() {
                    let tail = rest.split_off(rest.len().min(MAX_BATCH));
                    let chunk = std::mem::replace(&mut rest, tail);
                    let sent = if chunk.len() == 1 {
                        let single = chunk
                            .into_iter()
                            .next()
                            .ok_or_else(|| MessagingError::Invalid("empty batch".into()));
                        match single {
                            Ok(single) => producer
                                .send_to_queue_with_timeout(single, queue.clone(), timeout)
                                .await
                                .map(|_| ()),
                            Err(err) => return Err((topic, err.to_string())),
                        }
                    } else {
                        producer
                            .send_batch_to_queue_with_timeout(chunk, queue.clone(), timeout)
                            .await
                            .map(|_| ())
                    };
                    sent.map_err(|err| (topic.clone(), err.to_string()))?;
                }
                Ok(())
            }
        });
        let result = futures::future::try_join_all(sends).await;
        drop(producer);
        if let Err((topic, reason)) = result {
            // The route may be stale (a restarted broker): fetch the queues again next time.
            self.queues.write().await.remove(&topic);
            return Err(MessagingError::Publish { topic, reason });
        }
        Ok(())
    }

    /// The queue of an order: a stable hash of the order number over the topic's queues.
    async fn queue_for(&self, topic: &str, key: &str) -> Result<MessageQueue, MessagingError> {
        let cached = self
            .queues
            .read()
            .await
            .get(topic)
            .and_then(|(at, queues)| {
                (at.elapsed() < QUEUE_CACHE_TTL && !queues.is_empty()).then(|| queues.clone())
            });
        let queues = match cached {
            Some(queues) => queues,
            None => {
                let mut producer = self.producer.write().await;
                let mut fetched = match producer.fetch_publish_message_queues(topic).await {
                    Ok(queues) if !queues.is_empty() => queues,
                    // A topic nobody created yet: create it, then ask again.
                    _ => {
                        let queues = self.runtime.config().topic_queues;
                        if let Err(err) = create_topic(&mut producer, topic, queues).await {
                            tracing::warn!(error = %err, "publishing to a topic that did not exist");
                        }
                        producer
                            .fetch_publish_message_queues(topic)
                            .await
                            .map_err(|err| MessagingError::Publish {
                                topic: topic.to_owned(),
                                reason: format!("no route to the topic's queues: {err}"),
                            })?
                    }
                };
                drop(producer);
                if fetched.is_empty() {
                    return Err(MessagingError::Publish {
                        topic: topic.to_owned(),
                        reason: "the topic has no writable queue".into(),
                    });
                }
                fetched.sort_by(|a, b| {
                    (a.broker_name(), a.queue_id()).cmp(&(b.broker_name(), b.queue_id()))
                });
                self.queues
                    .write()
                    .await
                    .insert(topic.to_owned(), (Instant::now(), fetched.clone()));
                fetched
            }
        };
        let index = usize::try_from(stable_hash(key) % queues.len() as u64).unwrap_or(0);
        Ok(queues[index].clone())
    }

    pub async fn shutdown(&self) {
        self.producer.write().await.shutdown().await;
    }
}

/// Creates a (qualified) topic of `queues` queues through the broker's auto-create topic; an
/// existing topic is left as it is.
async fn create_topic(
    producer: &mut DefaultMQProducer,
    name: &str,
    queues: u32,
) -> Result<(), MessagingError> {
    producer
        .create_topic(
            "TBW102",
            name,
            i32::try_from(queues).unwrap_or(i32::MAX),
            HashMap::new(),
        )
        .await
        .map_err(|err| MessagingError::Publish {
            topic: name.to_owned(),
            reason: format!("cannot create topic: {err}"),
        })
}

/// FNV-1a: stable across processes and releases, unlike the standard library's hasher.
fn stable_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn to_message(
    topic: &str,
    outgoing: &OutgoingMessage,
) -> Result<Message, MessagingError> {
    let invalid =
        |what: &str| MessagingError::Invalid(format!("message {}: {what}", outgoing.message_id));
    let mut builder = Message::builder()
        .topic(topic.to_owned())
        .body(outgoing.payload.clone())
        .tags(outgoing.tag.clone())
        .raw_property(property::MESSAGE_ID, outgoing.message_id.to_string())
        .map_err(|e| invalid(&e.to_string()))?
        .raw_property(property::ATTEMPT, outgoing.attempt.to_string())
        .map_err(|e| invalid(&e.to_string()))?;
    if !outgoing.key.is_empty() {
        builder = builder.key(CheetahString::from(outgoing.key.clone()));
    }
    for (name, value) in [
        (property::SAGA_ID, &outgoing.saga_id),
        (property::STEP, &outgoing.step),
        (property::TRACEPARENT, &outgoing.traceparent),
    ] {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            builder = builder
                .raw_property(name, value.clone())
                .map_err(|e| invalid(&e.to_string()))?;
        }
    }
    builder.build().map_err(|e| invalid(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::stable_hash;

    #[test]
    fn the_queue_hash_is_stable() {
        // Changing this value moves orders to other queues during a rolling upgrade.
        assert_eq!(stable_hash("T20261125-0001"), stable_hash("T20261125-0001"));
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(stable_hash("a"), stable_hash("b"));
    }
}

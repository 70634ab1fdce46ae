//! A push consumer that runs an `async` handler per message on the service's own runtime.
//!
//! The client calls listeners synchronously on its blocking lane; the listener here hands the
//! batch to the service's runtime and waits, so a message is acknowledged only after its handler
//! returned. A handler error makes the broker redeliver the batch (through `%RETRY%<group>`)
//! up to `max_reconsume_times`, after which the broker moves it to `%DLQ%<group>`. A message
//! the handler rejects (an undecodable payload, say) is written to the dead-letter table with
//! its reason and acknowledged: it never blocks its queue and is never retried forever.
//!
//! A failed batch is redelivered whole (the client has no per-message acknowledgement), so
//! handlers must be idempotent: the inbox (`crate::inbox`) makes their effect happen once.

use std::future::Future;
use std::sync::Arc;

use cheetah_string::CheetahString;
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer,
    MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use sea_orm::DatabaseConnection;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::envelope::{IncomingMessage, property};
use super::{MessagingError, MessagingRuntime, Namespace, tag_expression};
use crate::dead_letter;
use crate::metrics::{ConsumedLabels, GroupLabel, MessagingMetrics, TopicGroup};

/// Why a handler did not complete a message.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// A passing failure (database down, timeout): the broker redelivers the message.
    #[error("retry later: {0}")]
    Retry(String),
    /// The message can never succeed (bad payload, unknown tag): dead-lettered with the reason.
    #[error("rejected: {0}")]
    Reject(String),
}

impl From<crate::group_commit::NotRun> for HandleError {
    fn from(not_run: crate::group_commit::NotRun) -> Self {
        Self::Retry(not_run.to_string())
    }
}

/// What a service does with one message.
pub trait MessageHandler: Send + Sync + 'static {
    fn handle(
        &self,
        message: IncomingMessage,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// A consumer group and what it subscribes to.
pub struct ConsumerSettings {
    /// Logical group name (the namespace is added).
    pub group: String,
    /// (logical topic, tags) pairs; `["*"]` takes every tag.
    pub subscriptions: Vec<(String, Vec<String>)>,
    /// The database whose outbox publishes rejected messages to `DEAD_LETTER_TOPIC`; `None`
    /// only logs them.
    pub dead_letters: Option<DatabaseConnection>,
}

impl ConsumerSettings {
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            subscriptions: Vec::new(),
            dead_letters: None,
        }
    }

    pub fn subscribe(mut self, topic: &str, tags: &[&str]) -> Self {
        self.subscriptions.push((
            topic.to_owned(),
            tags.iter().map(|t| (*t).to_owned()).collect(),
        ));
        self
    }

    pub fn dead_letters(mut self, db: DatabaseConnection) -> Self {
        self.dead_letters = Some(db);
        self
    }
}

/// A running consumer; stop it with [`Consumer::shutdown`].
pub struct Consumer {
    inner: Mutex<DefaultMQPushConsumer>,
    group: String,
}

impl Consumer {
    pub async fn start<H: MessageHandler>(
        runtime: Arc<MessagingRuntime>,
        settings: ConsumerSettings,
        handler: H,
    ) -> Result<Self, MessagingError> {
        let config = runtime.config();
        let group = config.namespace.qualify(&settings.group);
        let error = |reason: String| MessagingError::Consumer {
            group: group.clone(),
            reason,
        };
        if settings.subscriptions.is_empty() {
            return Err(error("subscribes to nothing".into()));
        }
        let mut consumer = DefaultMQPushConsumer::builder(runtime.client())
            .client_config(config.client_config())
            .consumer_group(group.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_message_batch_max_size(config.consume_batch)
            .pull_batch_size(config.consume_batch.max(32))
            .consume_thread_min(config.consume_threads)
            .consume_thread_max(config.consume_threads)
            .max_reconsume_times(config.max_reconsume_times)
            .build();
        for (topic, tags) in &settings.subscriptions {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let expression = tag_expression(&tags)?;
            consumer
                .subscribe(config.namespace.qualify(topic), expression)
                .await
                .map_err(|err| error(format!("cannot subscribe to {topic}: {err}")))?;
        }
        // Every series this consumer may count starts at 0, so a rate over it is defined
        // before the first retry or dead letter.
        let metrics = runtime.metrics();
        for (topic, _) in &settings.subscriptions {
            let labels = TopicGroup {
                topic: topic.clone(),
                group: settings.group.clone(),
            };
            for outcome in ["ok", "retry", "rejected"] {
                let _ = metrics.consumed.get_or_create(&ConsumedLabels {
                    topic: topic.clone(),
                    group: settings.group.clone(),
                    outcome,
                });
            }
            let _ = metrics.redeliveries.get_or_create(&labels);
        }
        let _ = metrics.dead_letters.get_or_create(&GroupLabel {
            group: settings.group.clone(),
        });
        consumer.register_message_listener_concurrently(Listener {
            handler: Arc::new(handler),
            app: tokio::runtime::Handle::current(),
            namespace: config.namespace.clone(),
            group: settings.group.clone(),
            dead_letters: settings.dead_letters,
            metrics: runtime.metrics().clone(),
        });
        consumer
            .start()
            .await
            .map_err(|err| error(format!("did not start: {err}")))?;
        tracing::info!(%group, "consumer started");
        Ok(Self {
            inner: Mutex::new(consumer),
            group,
        })
    }

    /// Stops taking messages; in-flight handlers finish first.
    pub async fn shutdown(&self) {
        self.inner.lock().await.shutdown().await;
        tracing::info!(group = %self.group, "consumer stopped");
    }
}

struct Listener<H> {
    handler: Arc<H>,
    app: tokio::runtime::Handle,
    namespace: Namespace,
    group: String,
    dead_letters: Option<DatabaseConnection>,
    metrics: MessagingMetrics,
}

impl<H: MessageHandler> MessageListenerConcurrently for Listener<H> {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let batch: Vec<IncomingMessage> =
            msgs.iter().map(|m| incoming(&self.namespace, m)).collect();
        let listened = std::time::Instant::now();
        if tracing::enabled!(tracing::Level::DEBUG) {
            // How long the batch took from the broker's store to this listener (the broker's
            // pull and the client), for `ticketctl bench flash-sale --keep-logs`.
            let now_ms = chrono::Utc::now().timestamp_millis();
            let waited = msgs.iter().map(|m| now_ms - m.store_timestamp());
            let sent = msgs
                .iter()
                .map(|m| m.store_timestamp() - m.born_timestamp());
            tracing::debug!(
                group = %self.group,
                messages = msgs.len(),
                born_to_store_max_ms = sent.max().unwrap_or(0),
                store_to_listener_max_ms = waited.clone().max().unwrap_or(0),
                store_to_listener_min_ms = waited.min().unwrap_or(0),
                "batch pulled"
            );
        }
        let handler = Arc::clone(&self.handler);
        let dead_letters = self.dead_letters.clone();
        let group = self.group.clone();
        let metrics = self.metrics.clone();
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.app.spawn(async move {
            tracing::debug!(
                %group,
                listener_to_handlers_ms = listened.elapsed().as_secs_f64() * 1000.0,
                "batch handed to the handlers"
            );
            let consumer = Consuming {
                group: &group,
                dead_letters: dead_letters.as_ref(),
                metrics: &metrics,
            };
            let _ = done.send(handle_batch(&*handler, batch, &consumer).await);
        });
        // An unanswered oneshot means the service's runtime is shutting down: redeliver later.
        Ok(match outcome.blocking_recv() {
            Ok(true) => ConsumeConcurrentlyStatus::ConsumeSuccess,
            _ => ConsumeConcurrentlyStatus::ReconsumeLater,
        })
    }
}

/// Runs the handler on each message of a batch: the messages of one key (an order) one after
/// another in their order, different keys at once, so a message does not wait behind the
/// handlers of other orders' messages pulled with it. `false` asks for redelivery.
async fn handle_batch<H: MessageHandler>(
    handler: &H,
    batch: Vec<IncomingMessage>,
    consumer: &Consuming<'_>,
) -> bool {
    let lanes = by_key(batch).into_iter().map(|lane| async move {
        let mut all_done = true;
        for message in lane {
            all_done &= handle_one(handler, message, consumer).await;
        }
        all_done
    });
    futures::future::join_all(lanes)
        .await
        .into_iter()
        .all(|done| done)
}

/// The batch split by message key, each key's messages in their order.
fn by_key(batch: Vec<IncomingMessage>) -> Vec<Vec<IncomingMessage>> {
    let mut lanes: Vec<Vec<IncomingMessage>> = Vec::new();
    for message in batch {
        match lanes.iter_mut().find(|lane| lane[0].key == message.key) {
            Some(lane) => lane.push(message),
            None => lanes.push(vec![message]),
        }
    }
    lanes
}

/// The consumer a batch is handled for: its group, where rejected messages go, and what is
/// counted.
struct Consuming<'a> {
    group: &'a str,
    dead_letters: Option<&'a DatabaseConnection>,
    metrics: &'a MessagingMetrics,
}

/// Runs the handler on one message; `false` asks for redelivery.
async fn handle_one<H: MessageHandler>(
    handler: &H,
    message: IncomingMessage,
    consumer: &Consuming<'_>,
) -> bool {
    let Consuming {
        group,
        dead_letters,
        metrics,
    } = *consumer;
    let labels = TopicGroup {
        topic: message.topic.clone(),
        group: group.to_owned(),
    };
    if message.stored_at_ms > 0 {
        let waited_ms = chrono::Utc::now().timestamp_millis() - message.stored_at_ms;
        #[allow(clippy::cast_precision_loss)]
        metrics
            .delay
            .get_or_create(&labels)
            .observe(waited_ms.max(0) as f64 / 1000.0);
    }
    if message.reconsume_times > 0 {
        metrics.redeliveries.get_or_create(&labels).inc();
    }
    let started = std::time::Instant::now();
    let span = crate::telemetry::continuing(
        tracing::info_span!(
            "consume",
            group,
            topic = %message.topic,
            tag = %message.tag,
            order_no = %message.key,
            message_id = %message.message_id,
            attempt = message.reconsume_times,
        ),
        message.traceparent.as_deref(),
    );
    let result = handler
        .handle(message.clone())
        .instrument(span.clone())
        .await;
    metrics
        .handling
        .get_or_create(&labels)
        .observe(crate::metrics::secs(started.elapsed()));
    let consumed = |outcome| {
        metrics
            .consumed
            .get_or_create(&ConsumedLabels {
                topic: labels.topic.clone(),
                group: labels.group.clone(),
                outcome,
            })
            .inc();
    };
    match result {
        Ok(()) => {
            consumed("ok");
            true
        }
        Err(HandleError::Retry(reason)) => {
            consumed("retry");
            tracing::warn!(parent: &span, %reason, "handler failed; the broker will redeliver");
            false
        }
        Err(HandleError::Reject(reason)) => {
            consumed("rejected");
            tracing::error!(parent: &span, %reason, "message rejected; publishing it as a dead letter");
            let Some(db) = dead_letters else { return true };
            match dead_letter::reject(db, group, &message, &reason)
                .instrument(span.clone())
                .await
            {
                Ok(()) => {
                    metrics
                        .dead_letters
                        .get_or_create(&GroupLabel {
                            group: group.to_owned(),
                        })
                        .inc();
                    true
                }
                Err(err) => {
                    tracing::warn!(parent: &span, error = %err, "cannot record the dead letter; the broker will redeliver");
                    false
                }
            }
        }
    }
}

fn incoming(namespace: &Namespace, msg: &MessageExt) -> IncomingMessage {
    let props = msg.properties();
    let prop = |name: &str| props.get(&CheetahString::from(name)).map(|v| v.to_string());
    // A redelivered message arrives from %RETRY%<group>; its original topic is kept in a property.
    let topic = prop("RETRY_TOPIC").unwrap_or_else(|| msg.topic().to_string());
    IncomingMessage {
        topic: namespace.strip(&topic),
        tag: msg.get_tags().map(|t| t.to_string()).unwrap_or_default(),
        key: prop("KEYS").unwrap_or_default(),
        // Without an id of the sender's, the broker's: the inbox deduplicates on it.
        message_id: prop(property::MESSAGE_ID)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| msg.msg_id().to_string()),
        saga_id: prop(property::SAGA_ID),
        step: prop(property::STEP),
        attempt: prop(property::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        traceparent: prop(property::TRACEPARENT),
        body: msg.body().unwrap_or_default(),
        reconsume_times: msg.reconsume_times(),
        broker_message_id: msg.msg_id().to_string(),
        queue_id: msg.queue_id(),
        delivered_from: namespace.strip(msg.topic().as_str()),
        stored_at_ms: msg.store_timestamp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, id: &str) -> IncomingMessage {
        IncomingMessage {
            topic: "T".into(),
            tag: "X".into(),
            key: key.into(),
            message_id: id.into(),
            saga_id: None,
            step: None,
            attempt: 0,
            traceparent: None,
            body: Default::default(),
            reconsume_times: 0,
            broker_message_id: id.into(),
            queue_id: 0,
            delivered_from: "T".into(),
            stored_at_ms: 0,
        }
    }

    #[test]
    fn a_batch_splits_by_key_and_keeps_each_keys_order() {
        let batch = ["a1", "b1", "a2", "c1", "b2", "a3"]
            .iter()
            .map(|id| message(&id[..1], id))
            .collect();
        let lanes: Vec<Vec<String>> = by_key(batch)
            .into_iter()
            .map(|lane| lane.into_iter().map(|m| m.message_id).collect())
            .collect();
        assert_eq!(
            lanes,
            [vec!["a1", "a2", "a3"], vec!["b1", "b2"], vec!["c1"]]
        );
    }
}

#[cfg(test)]
mod prop_tests;

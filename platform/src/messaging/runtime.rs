//! The RocketMQ client runtime of one process, and the messaging settings every service shares.
//!
//! The client runs its own Tokio runtime and calls listeners on its blocking lanes. Under load
//! the client rejects consume tasks when the lane is full (`runtime.capacity.exhausted`), and a
//! rejected task is redelivered, pushing healthy messages toward the DLQ (measured: with the
//! default lane, 9,366 of 20,000 backlogged messages were redelivered by load alone). The lane
//! that runs listeners is therefore sized here: room for 192 listener calls at once (every
//! consumer's threads) and a queue deep enough that a burst waits instead of being rejected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{ClientConfig, ClientRuntime, ClientRuntimeConfig};
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use super::{MessagingError, Namespace};
use crate::config::ConfigSource;

/// Settings shared by publishers and consumers of one service.
#[derive(Clone, Debug)]
pub struct MessagingConfig {
    /// `host:port` of the name server(s), `;`-separated.
    pub name_server: String,
    pub namespace: Namespace,
    /// Redeliveries of a failing message before the broker moves it to `%DLQ%<group>`.
    pub max_reconsume_times: i32,
    /// Messages handed to one listener call.
    pub consume_batch: u32,
    /// Concurrent listener calls per consumer.
    pub consume_threads: u32,
    /// Queues of a topic the publisher creates (a topic that exists keeps its own). A relay
    /// round sends one request per queue it touches and the broker admits `min(CPUs, 8)` sends
    /// at once, so fewer queues mean fewer requests waiting there; a consumer group's replicas
    /// share a topic's queues, so a topic needs at least as many queues as replicas consume it
    /// (docs/BENCHMARKS.md).
    pub topic_queues: u32,
    /// The most consumed commands a participant runs in one transaction (its inbox rows, every
    /// command's effect and the replies' outbox rows commit together). The commands of a batch
    /// run one after another, and a change is seen only at its batch's commit: 32 decided sales
    /// sooner than 128 (docs/BENCHMARKS.md, sixth reading).
    pub command_batch_max: usize,
    /// Such transactions one participant consumer runs at once.
    pub command_batch_concurrency: usize,
    /// Per-send timeout.
    pub send_timeout: Duration,
    /// How often clients refresh topic routes: short, so producers find a restarted broker
    /// (the client accepts 10 s to 10 min).
    pub route_refresh: Duration,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            name_server: "127.0.0.1:9876".into(),
            namespace: Namespace::default(),
            max_reconsume_times: 16,
            consume_batch: 32,
            consume_threads: 16,
            topic_queues: 4,
            command_batch_max: 32,
            command_batch_concurrency: 4,
            send_timeout: Duration::from_secs(3),
            route_refresh: Duration::from_secs(10),
        }
    }
}

impl MessagingConfig {
    /// Reads `messaging.*` keys.
    pub fn load(source: &mut ConfigSource) -> Self {
        let d = Self::default();
        let namespace_raw = source.string("messaging.namespace", "");
        let namespace = Namespace::new(&namespace_raw).unwrap_or_else(|err| {
            source.invalid("messaging.namespace", err);
            Namespace::default()
        });
        let config = Self {
            name_server: source.string("messaging.name_server", &d.name_server),
            namespace,
            max_reconsume_times: source.get("messaging.max_reconsume_times", d.max_reconsume_times),
            consume_batch: source.get("messaging.consume_batch", d.consume_batch),
            consume_threads: source.get("messaging.consume_threads", d.consume_threads),
            topic_queues: source.get("messaging.topic_queues", d.topic_queues),
            command_batch_max: source.get("messaging.command_batch_max", d.command_batch_max),
            command_batch_concurrency: source.get(
                "messaging.command_batch_concurrency",
                d.command_batch_concurrency,
            ),
            send_timeout: source.millis("messaging.send_timeout_ms", d.send_timeout),
            route_refresh: source.millis("messaging.route_refresh_ms", d.route_refresh),
        };
        if !(0..=32).contains(&config.max_reconsume_times) {
            source.invalid("messaging.max_reconsume_times", "must be between 0 and 32");
        }
        if !(1..=1024).contains(&config.consume_batch) {
            source.invalid("messaging.consume_batch", "must be between 1 and 1024");
        }
        if !(1..=256).contains(&config.consume_threads) {
            source.invalid("messaging.consume_threads", "must be between 1 and 256");
        }
        if !(1..=64).contains(&config.topic_queues) {
            source.invalid("messaging.topic_queues", "must be between 1 and 64");
        }
        if !(1..=1024).contains(&config.command_batch_max) {
            source.invalid("messaging.command_batch_max", "must be between 1 and 1024");
        }
        if !(1..=64).contains(&config.command_batch_concurrency) {
            source.invalid(
                "messaging.command_batch_concurrency",
                "must be between 1 and 64",
            );
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(600)).contains(&config.route_refresh) {
            source.invalid(
                "messaging.route_refresh_ms",
                "must be between 10000 and 600000",
            );
        }
        if config.name_server.trim().is_empty() {
            source.invalid("messaging.name_server", "must name at least one host:port");
        }
        config
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig {
            namesrv_addr: Some(self.name_server.clone().into()),
            client_ip: Some("127.0.0.1".into()),
            poll_name_server_interval: millis_u32(self.route_refresh),
            heartbeat_broker_interval: 10_000,
            persist_consumer_offset_interval: 1_000,
            // Pull answers are handed on through this many permits; the client's default, one
            // per CPU, made pulled messages wait under load (docs/BENCHMARKS.md).
            client_callback_executor_threads: 8,
            ..ClientConfig::default()
        };
        config.instance_name = format!(
            "ticket-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )
        .into();
        if let Ok(ip) = std::env::var("TICKET_CLIENT_IP") {
            config.client_ip = Some(ip.into());
        }
        config
    }
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// One process's RocketMQ client runtime, shared by its publishers and consumers.
pub struct MessagingRuntime {
    client: Arc<ClientRuntime>,
    owner: Mutex<Option<RuntimeOwner>>,
    _telemetry: TelemetryRuntimeGuard,
    config: MessagingConfig,
    metrics: crate::metrics::MessagingMetrics,
}

impl MessagingRuntime {
    pub fn start(config: MessagingConfig) -> Result<Arc<Self>, MessagingError> {
        let runtime_error = |what: &str, err: &dyn std::fmt::Display| {
            MessagingError::Runtime(format!("{what}: {err}"))
        };
        // Listener calls run on the metadata-io lane: room for every consumer's threads, and a
        // queue deep enough that a burst waits instead of being rejected.
        let mut runtime_config = RuntimeConfig::for_parallelism("ticket-mq", 2)
            .with_max_blocking_threads(256)
            .map_err(|e| runtime_error("blocking threads", &e))?;
        let lane = &mut runtime_config.blocking_lane_policies.metadata_io;
        lane.max_concurrency = 192;
        lane.max_queue_depth = 16_384;
        lane.queue_timeout = Duration::from_secs(120);
        lane.task_timeout = Duration::from_secs(300);
        lane.warn_after = Duration::from_secs(10);
        let owner = RuntimeOwner::plan(runtime_config)
            .map_err(|e| runtime_error("runtime plan", &e))?
            .build()
            .map_err(|e| runtime_error("runtime", &e))?;
        let telemetry = TelemetryRuntimeGuard::noop();
        let client = ClientRuntime::try_new(
            owner.root_context().component("ticket-client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .map_err(|e| runtime_error("client runtime", &e))?;
        Ok(Arc::new(Self {
            client,
            owner: Mutex::new(Some(owner)),
            _telemetry: telemetry,
            config,
            metrics: crate::metrics::MessagingMetrics::default(),
        }))
    }

    pub fn config(&self) -> &MessagingConfig {
        &self.config
    }

    /// What this process's publishers and consumers did (registered by the service).
    pub fn metrics(&self) -> &crate::metrics::MessagingMetrics {
        &self.metrics
    }

    pub(crate) fn client(&self) -> Arc<ClientRuntime> {
        Arc::clone(&self.client)
    }

    /// Stops the client runtime; call after every publisher and consumer has shut down.
    pub async fn shutdown(&self) {
        let report = self.client.shutdown().await;
        if !report.is_healthy() {
            tracing::warn!(report = %report.to_json(), "RocketMQ client runtime did not stop cleanly");
        }
        let owner = self.owner.lock().ok().and_then(|mut owner| owner.take());
        if let Some(owner) = owner {
            let _ = owner.shutdown_background();
        }
    }
}

impl Drop for MessagingRuntime {
    fn drop(&mut self) {
        // Dropping a Tokio runtime inside async code panics; shutting it down in the background
        // does not.
        let owner = self.owner.get_mut().ok().and_then(Option::take);
        if let Some(owner) = owner {
            let _ = owner.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (MessagingConfig, Result<(), String>) {
        let vars: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut source = ConfigSource::from_pairs("T", vars);
        let config = MessagingConfig::load(&mut source);
        (config, source.finish().map_err(|err| err.to_string()))
    }

    #[test]
    fn topic_queues_are_a_setting_with_bounds() {
        let (config, checked) = load(&[]);
        assert_eq!((config.topic_queues, checked), (4, Ok(())));
        let (config, checked) = load(&[("T_MESSAGING__TOPIC_QUEUES", "2")]);
        assert_eq!((config.topic_queues, checked), (2, Ok(())));
        let (_, checked) = load(&[("T_MESSAGING__TOPIC_QUEUES", "0")]);
        let error = checked.expect_err("0 queues");
        assert!(
            error.contains("T_MESSAGING__TOPIC_QUEUES") && error.contains("between 1 and 64"),
            "{error}"
        );
    }

    #[test]
    fn command_batches_are_settings_with_bounds() {
        let (config, checked) = load(&[]);
        assert_eq!(
            (
                config.command_batch_max,
                config.command_batch_concurrency,
                checked
            ),
            (32, 4, Ok(()))
        );
        let (config, checked) = load(&[
            ("T_MESSAGING__COMMAND_BATCH_MAX", "1"),
            ("T_MESSAGING__COMMAND_BATCH_CONCURRENCY", "8"),
        ]);
        assert_eq!(
            (
                config.command_batch_max,
                config.command_batch_concurrency,
                checked
            ),
            (1, 8, Ok(()))
        );
        for (key, value, bounds) in [
            ("T_MESSAGING__COMMAND_BATCH_MAX", "0", "between 1 and 1024"),
            (
                "T_MESSAGING__COMMAND_BATCH_MAX",
                "1025",
                "between 1 and 1024",
            ),
            (
                "T_MESSAGING__COMMAND_BATCH_CONCURRENCY",
                "0",
                "between 1 and 64",
            ),
        ] {
            let (_, checked) = load(&[(key, value)]);
            let error = checked.expect_err(value);
            assert!(error.contains(key) && error.contains(bounds), "{error}");
        }
    }
}

//! orchestrator: the purchase saga, its log, timers, compensation and admin API.
//!
//! - `saga/`: the generic engine (`definition` what a saga type declares, `machine` the pure
//!   step machine, `engine` its transactions, `log` the saga log) and the `purchase` saga;
//! - `dispatch`: how commands reach participants (RocketMQ, or gRPC calls after the commit);
//! - `timers`: due timers claimed and fired one transaction each;
//! - `events`: order events and replies from RocketMQ, handled in batches (the platform's `group_commit`);
//! - `admin`: `SagaAdmin` for operators; `error`: the one error → `Status` mapping.
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod admin;
pub mod dead_letters;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod migration;
pub mod saga;
pub mod timers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ticket_platform::app::{Service, StartError};
use ticket_platform::config::{ConfigErrors, ConfigSource};
use ticket_platform::messaging::{Consumer, ConsumerSettings, DLQ_PREFIX, topic};
use ticket_platform::service::ServiceConfig;
use ticket_proto::saga::v1::saga_admin_server::SagaAdminServer;
use ticket_proto::saga::v1::saga_events_server::SagaEventsServer;

use crate::admin::SagaAdminApi;
use crate::dead_letters::DeadLetters;
use crate::dispatch::{CommandHandover, Dispatcher, ParticipantAddrs, Transport};
use crate::events::{Intake, OrderEvents, Replies, SagaEventsApi};
use crate::saga::definition::RetryPolicy;
use crate::saga::engine::Engine;
use crate::saga::purchase::{Purchase, SagaSettings};

/// Environment prefix of this service's settings (`TICKET_ORCHESTRATOR_GRPC__ADDR`, ...).
pub const ENV_PREFIX: &str = "TICKET_ORCHESTRATOR";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50053;
/// How often the saga log is measured for the metrics (`sagas_parked`, `saga_timers_due`).
const SAGA_LOG_GAUGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Default admin HTTP port (`/metrics`, `/livez`, `/readyz`).
pub const DEFAULT_ADMIN_PORT: u16 = 9102;
/// The gRPC services this process serves, as reflection lists them.
pub const SERVICES: &[&str] = &["ticket.saga.v1.SagaAdmin", "ticket.saga.v1.SagaEvents"];

/// Why the orchestrator did not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("messaging: {0}")]
    Messaging(#[from] ticket_platform::messaging::MessagingError),
    #[error("participants: {0}")]
    Participants(String),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub service: ServiceConfig,
    /// `rocketmq` (default; gRPC while the broker is down) or `grpc` (`transport`).
    pub transport: Transport,
    /// Participants' gRPC addresses (`participants.stock`, `.order`, `.notify`); they are
    /// called with the service token.
    pub participants: ParticipantAddrs,
    /// Step timeouts, retries, the payment window and the margin after it
    /// (`saga.step_timeout_ms`, `saga.max_attempts`, `saga.backoff_ms`, `saga.max_backoff_ms`,
    /// `saga.payment_window_ms`, `saga.expiry_margin_ms`).
    pub saga: SagaSettings,
    /// How often due timers are looked for (`timers.poll_ms`).
    pub timer_poll: Duration,
    /// How many consumed orders or replies one engine transaction takes at most
    /// (`saga.batch_max`), and how many such transactions run at once per consumer
    /// (`saga.batch_concurrency`).
    pub batches: Batches,
    /// How old an unpublished outbox row makes the broker count as down
    /// (`transport.fallback_after_ms`; 0 never falls back).
    pub fallback_after: Duration,
    /// The consumer groups whose `%DLQ%` is read into the dead letters
    /// (`dead_letters.groups`, comma-separated; the system's groups by default).
    pub dead_letter_groups: Vec<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut source = ConfigSource::from_env(ENV_PREFIX);
        let config = Self::load(&mut source);
        source.finish().map(|()| config)
    }

    pub fn load(source: &mut ConfigSource) -> Self {
        let service = ServiceConfig::load(
            source,
            "orchestrator",
            (DEFAULT_PORT, DEFAULT_ADMIN_PORT),
            "ticket_orchestrator",
        );
        let transport_name = source.string("transport", "rocketmq");
        let transport = Transport::parse(&transport_name).unwrap_or_else(|| {
            source.invalid("transport", "must be rocketmq or grpc");
            Transport::RocketMq
        });
        let participants = ParticipantAddrs {
            stock: source.string("participants.stock", "http://127.0.0.1:50052"),
            order: source.string("participants.order", "http://127.0.0.1:50051"),
            notify: source.string("participants.notify", "http://127.0.0.1:50054"),
        };
        let defaults = SagaSettings::default();
        let saga = SagaSettings {
            step_timeout: source.millis("saga.step_timeout_ms", defaults.step_timeout),
            retry: RetryPolicy {
                max_attempts: source.get("saga.max_attempts", defaults.retry.max_attempts),
                backoff: source.millis("saga.backoff_ms", defaults.retry.backoff),
                max_backoff: source.millis("saga.max_backoff_ms", defaults.retry.max_backoff),
            },
            payment_window: source.millis("saga.payment_window_ms", defaults.payment_window),
            expiry_margin: source.millis("saga.expiry_margin_ms", defaults.expiry_margin),
        };
        if saga.retry.max_attempts == 0 {
            source.invalid("saga.max_attempts", "must be at least 1");
        }
        if saga.step_timeout.is_zero() {
            source.invalid("saga.step_timeout_ms", "must be above 0");
        }
        let timer_poll = source.millis("timers.poll_ms", Duration::from_millis(200));
        let batches = Batches {
            max: source.get("saga.batch_max", Batches::default().max),
            concurrency: source.get("saga.batch_concurrency", Batches::default().concurrency),
        };
        if !(1..=1024).contains(&batches.max) {
            source.invalid("saga.batch_max", "must be between 1 and 1024");
        }
        if !(1..=64).contains(&batches.concurrency) {
            source.invalid("saga.batch_concurrency", "must be between 1 and 64");
        }
        let fallback_after = source.millis("transport.fallback_after_ms", Duration::from_secs(3));
        let groups = source.string(
            "dead_letters.groups",
            &dead_letters::SYSTEM_GROUPS.join(","),
        );
        let dead_letter_groups: Vec<String> = groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = dead_letter_groups.iter().find(|g| {
            g.chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        }) {
            source.invalid(
                "dead_letters.groups",
                format!("group {bad:?} may hold only letters, digits, '-' and '_'"),
            );
        }
        Self {
            service,
            transport,
            participants,
            saga,
            timer_poll,
            batches,
            fallback_after,
            dead_letter_groups,
        }
    }
}

/// The consumers' group commit ([`ticket_platform::group_commit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batches {
    pub max: usize,
    pub concurrency: usize,
}

impl Default for Batches {
    fn default() -> Self {
        Self {
            max: 128,
            concurrency: 4,
        }
    }
}

pub struct Application {
    service: Service,
    engine: Engine<Purchase>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let mut service =
            Service::build::<migration::Migrator>("orchestrator", &config.service, SERVICES)
                .await?;
        service
            .ensure_topics(&[
                topic::ORDER,
                topic::STOCK,
                topic::ORDER_CMD,
                topic::NOTIFICATION,
                topic::SAGA_REPLY,
                topic::DEAD_LETTER,
            ])
            .await;
        let dispatcher = Dispatcher::start(
            service.db.clone(),
            config.transport,
            &config.participants,
            &config.service.access.service_token,
            config.fallback_after,
            &service.clients,
        )
        .map_err(BuildError::Participants)?;
        let engine = Engine::new(
            service.db.clone(),
            Purchase::new(&config.saga),
            dispatcher.clone(),
        );
        engine.metrics().register(&service.metrics);
        {
            let (metrics, db) = (engine.metrics().clone(), service.db.clone());
            service.spawn_background(|stop| {
                metrics.watch_log(db, Purchase::NAME, SAGA_LOG_GAUGE_INTERVAL, stop)
            });
        }
        let intake = Intake::new(engine.clone(), config.batches);
        let replies = Consumer::start(
            Arc::clone(&service.messaging),
            ConsumerSettings::new(events::REPLIES_GROUP)
                .subscribe(topic::SAGA_REPLY, &["*"])
                .dead_letters(service.db.clone()),
            Replies::new(engine.clone(), config.batches),
        )
        .await?;
        service.add_consumer(replies);
        let order_events = Consumer::start(
            Arc::clone(&service.messaging),
            ConsumerSettings::new(events::EVENTS_GROUP)
                .subscribe(topic::ORDER, events::EVENT_TAGS)
                .dead_letters(service.db.clone()),
            OrderEvents::new(intake.clone()),
        )
        .await?;
        service.add_consumer(order_events);
        let dlqs: Vec<String> = config
            .dead_letter_groups
            .iter()
            .map(|group| format!("{DLQ_PREFIX}{group}"))
            .collect();
        let settings = dlqs.iter().fold(
            ConsumerSettings::new(dead_letters::GROUP)
                .subscribe(topic::DEAD_LETTER, &["*"])
                .dead_letters(service.db.clone()),
            |settings, dlq| settings.subscribe(dlq, &["*"]),
        );
        let dead_letters = Consumer::start(
            Arc::clone(&service.messaging),
            settings,
            DeadLetters {
                db: service.db.clone(),
            },
        )
        .await?;
        service.add_consumer(dead_letters);
        let (poll, timer_engine) = (config.timer_poll, engine.clone());
        service.spawn_background(|stop| timers::spawn(timer_engine, poll, stop));
        if config.transport == Transport::RocketMq && !config.fallback_after.is_zero() {
            let replies = engine.clone();
            let handover = CommandHandover {
                dispatcher,
                on_reply: move |command, reply| replies.clone().handed_over_reply(command, reply),
            };
            service.spawn_handover(
                handover,
                &[topic::STOCK, topic::ORDER_CMD, topic::NOTIFICATION],
                config.fallback_after,
            );
        }
        let admin = SagaAdminApi {
            db: service.db.clone(),
            engine: engine.clone(),
            access: service.access.clone(),
        };
        let events = SagaEventsApi {
            intake,
            access: service.access.clone(),
        };
        let limit = service.max_message_bytes;
        let service = service.router(|router| {
            router
                .add_service(SagaAdminServer::new(admin).max_decoding_message_size(limit))
                .add_service(SagaEventsServer::new(events).max_decoding_message_size(limit))
        });
        Ok(Self { service, engine })
    }

    /// Test switch: every message this service publishes goes out twice (same `message_id`),
    /// as a broker redelivery would.
    pub fn set_duplicate_deliveries(&self, on: bool) {
        self.service.publisher.set_duplicate_deliveries(on);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr()
    }

    /// Where the admin HTTP port (`/metrics`, `/livez`, `/readyz`) listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.service.admin_addr()
    }

    pub fn engine(&self) -> &Engine<Purchase> {
        &self.engine
    }

    /// Serves until `shutdown`, then stops in order (timers and the handover first).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        self.service.run_until_stopped(shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (Config, Result<(), String>) {
        // The development profile: no tokens needed.
        let vars = [("T_PROFILE", "dev")]
            .iter()
            .chain(pairs)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let mut source = ConfigSource::from_pairs("T", vars);
        let config = Config::load(&mut source);
        (config, source.finish().map_err(|err| err.to_string()))
    }

    #[test]
    fn batches_are_settings_with_bounds() {
        let (config, checked) = load(&[]);
        assert_eq!((config.batches, checked), (Batches::default(), Ok(())));
        let (config, _) = load(&[
            ("T_SAGA__BATCH_MAX", "1"),
            ("T_SAGA__BATCH_CONCURRENCY", "2"),
        ]);
        assert_eq!(
            config.batches,
            Batches {
                max: 1,
                concurrency: 2
            }
        );
        let (_, checked) = load(&[
            ("T_SAGA__BATCH_MAX", "0"),
            ("T_SAGA__BATCH_CONCURRENCY", "65"),
        ]);
        let error = checked.expect_err("out of bounds");
        for expected in [
            "T_SAGA__BATCH_MAX",
            "between 1 and 1024",
            "T_SAGA__BATCH_CONCURRENCY",
        ] {
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}

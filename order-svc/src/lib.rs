//! order-svc: orders, idempotent submission, payment, cancellation and live status.
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod admission;
pub mod announcement;
pub mod commands;
pub mod contacts;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod migration;
pub mod order_api;
pub mod order_events;
pub mod orders;
pub mod tiers;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use ticket_platform::app::{Service, StartError};
use ticket_platform::config::{ConfigErrors, ConfigSource};
use ticket_platform::messaging::topic;
use ticket_platform::readiness::Dependency;
use ticket_platform::service::ServiceConfig;
use ticket_platform::stock_keys;
use ticket_proto::order::v1::contact_service_server::ContactServiceServer;
use ticket_proto::order::v1::order_service_server::OrderServiceServer;

use crate::admission::Admission;
use crate::commands::OrderCommands;
use crate::contacts::ContactApi;
use crate::guard::{Guard, GuardConfig};
use crate::order_api::OrderApi;
use crate::order_events::{EventHandover, Orchestrator};
use crate::tiers::Tiers;
use crate::watch::Changes;

/// Environment prefix of this service's settings (`TICKET_ORDER_GRPC__ADDR`, ...).
pub const ENV_PREFIX: &str = "TICKET_ORDER";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50051;
/// Default admin HTTP port (`/metrics`, `/livez`, `/readyz`).
pub const DEFAULT_ADMIN_PORT: u16 = 9100;
/// The gRPC services this process serves, as reflection lists them.
pub const SERVICES: &[&str] = &[
    "ticket.order.v1.OrderService",
    "ticket.order.v1.ContactService",
    "ticket.saga.v1.Participant",
];

/// Why order-svc did not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Dependency(#[from] error::Error),
    #[error("messaging: {0}")]
    Messaging(#[from] ticket_platform::messaging::MessagingError),
    #[error("{0}")]
    Orchestrator(String),
    #[error("access: {0}")]
    Access(String),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub service: ServiceConfig,
    /// stock-svc's gRPC address, where tiers are looked up (`catalog.addr`).
    pub catalog_addr: String,
    /// Redis of the live stock, where the sold-out flags are (`redis.url`).
    pub redis_url: String,
    /// Connections in the Redis pool (`redis.connections`).
    pub redis_connections: usize,
    /// stock-svc's Redis key prefix (`redis.key_prefix`).
    pub redis_key_prefix: String,
    /// The orchestrator's gRPC address (`orchestrator.addr`), where order events go when the
    /// broker does not take them and where the sweeper starts sagas.
    pub orchestrator_addr: String,
    /// Buyer tokens, the payment callback's token and the `CreateOrder` limits.
    pub guard: GuardConfig,
    /// An order event unpublished this long goes over gRPC (`events.fallback_after_ms`; 0 never).
    pub events_fallback_after: Duration,
    /// An order still `PENDING` this long gets its saga started again
    /// (`sweep.pending_after_ms`).
    pub sweep_pending_after: Duration,
    /// How often the sweeper looks (`sweep.interval_ms`; 0 turns it off).
    pub sweep_interval: Duration,
    /// How long tickets promised to an accepted order wait for its prededuct before they are
    /// let go (`admission.hold_ms`; 0 turns admission off: only the sold-out flag refuses).
    pub admission_hold: Duration,
    /// The longest a CreateOrder that asks for its decision waits for it
    /// (`create.decision_wait_ms`).
    pub decision_wait: Duration,
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
            "order-svc",
            (DEFAULT_PORT, DEFAULT_ADMIN_PORT),
            "ticket_order",
        );
        let catalog_addr = source.string("catalog.addr", "http://127.0.0.1:50052");
        if !(catalog_addr.starts_with("http://") || catalog_addr.starts_with("https://")) {
            source.invalid("catalog.addr", "must start with http:// or https://");
        }
        let redis_url = source.string("redis.url", "redis://127.0.0.1:6379");
        let redis_connections = source.get("redis.connections", 8usize);
        if !(1..=256).contains(&redis_connections) {
            source.invalid("redis.connections", "must be between 1 and 256");
        }
        let redis_key_prefix = source.string("redis.key_prefix", stock_keys::DEFAULT_PREFIX);
        let orchestrator_addr = source.string("orchestrator.addr", "http://127.0.0.1:50053");
        if !(orchestrator_addr.starts_with("http://") || orchestrator_addr.starts_with("https://"))
        {
            source.invalid("orchestrator.addr", "must start with http:// or https://");
        }
        let events_fallback_after =
            source.millis("events.fallback_after_ms", Duration::from_secs(3));
        let sweep_pending_after = source.millis("sweep.pending_after_ms", Duration::from_secs(30));
        let sweep_interval = source.millis("sweep.interval_ms", Duration::from_secs(5));
        let admission_hold = source.millis("admission.hold_ms", Duration::from_secs(30));
        let decision_wait = source.millis("create.decision_wait_ms", Duration::from_secs(10));
        let guard = GuardConfig::load(source, &service.access);
        Self {
            guard,
            service,
            catalog_addr,
            redis_url,
            redis_connections,
            redis_key_prefix,
            orchestrator_addr,
            events_fallback_after,
            sweep_pending_after,
            sweep_interval,
            admission_hold,
            decision_wait,
        }
    }
}

pub struct Application {
    service: Service,
    changes: Changes,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let mut service =
            Service::build::<migration::Migrator>("order-svc", &config.service, SERVICES).await?;
        let tiers = Tiers::connect(
            &config.catalog_addr,
            &config.redis_url,
            config.redis_connections,
            &config.redis_key_prefix,
            &service.clients,
        )
        .await?;
        service.needs(Dependency::redis(tiers.redis().clone()));
        service
            .ensure_topics(&[topic::ORDER, topic::ORDER_CMD, topic::SAGA_REPLY])
            .await;
        let order_metrics = metrics::OrderMetrics::default();
        order_metrics.register(&service.metrics);
        // Every door of order-svc knows every credential it is shown (the payment token and
        // buyer tokens too), so a known one on the wrong call is refused as such.
        let guard =
            Guard::new(&config.service.access, &config.guard).map_err(BuildError::Access)?;
        service.access = guard.access.clone();
        let participant = service
            .participant(
                OrderCommands {
                    metrics: order_metrics.clone(),
                },
                commands::CONSUMER_GROUP,
                topic::ORDER_CMD,
                commands::TAGS,
            )
            .await?;
        let orchestrator = Orchestrator::new(
            &config.orchestrator_addr,
            &config.service.access.service_token,
            &service.clients,
        )
        .map_err(BuildError::Orchestrator)?;
        if !config.events_fallback_after.is_zero() {
            let handover = EventHandover(orchestrator.clone());
            service.spawn_handover(handover, &[topic::ORDER], config.events_fallback_after);
        }
        if !config.sweep_interval.is_zero() {
            let (db, orchestrator) = (service.db.clone(), orchestrator.clone());
            let (after, every) = (config.sweep_pending_after, config.sweep_interval);
            service
                .spawn_background(|stop| order_events::sweep(db, orchestrator, after, every, stop));
        }
        let changes = Changes::start(&config.service.database.url);
        let admission = Admission::new(
            tiers.redis().clone(),
            &config.redis_key_prefix,
            config.admission_hold,
        );
        let contacts = ContactApi {
            db: service.db.clone(),
            access: service.access.clone(),
        };
        let api = OrderApi {
            db: service.db.clone(),
            tiers,
            admission,
            changes: changes.clone(),
            orchestrator,
            decision_wait: config.decision_wait,
            metrics: order_metrics,
            guard,
        };
        let limit = service.max_message_bytes;
        let service = service.router(|router| {
            router
                .add_service(OrderServiceServer::new(api).max_decoding_message_size(limit))
                .add_service(ContactServiceServer::new(contacts).max_decoding_message_size(limit))
                .add_service(participant)
        });
        Ok(Self { service, changes })
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

    /// Serves until `shutdown`; then ends the order watches, so their streams do not hold
    /// the drain, and stops in order.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let changes = self.changes;
        self.service
            .run_until_stopped(async move {
                shutdown.await;
                changes.stop();
            })
            .await
    }
}

//! stock-svc: the catalog and flash-sale-safe stock (Redis Lua gate, Postgres ledger).
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod commands;
pub mod drift;
pub mod error;
pub mod gate;
pub mod ledger;
pub mod metrics;
pub mod migration;
pub mod rebuild;
pub mod reconciliation;
pub mod stock;
pub mod stock_api;
pub mod tiers;
pub mod verify;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use ticket_platform::app::{Service, StartError};
use ticket_platform::messaging::topic;
use ticket_platform::readiness::Dependency;
use ticket_proto::stock::v1::catalog_service_server::CatalogServiceServer;
use ticket_proto::stock::v1::stock_service_server::StockServiceServer;
use tokio::task::JoinHandle;

use crate::catalog::Catalog;
use crate::commands::StockCommands;
use crate::drift::DriftWatch;
use crate::gate::{GateError, StockGate};
use crate::stock::Stock;
use crate::stock_api::StockApi;

/// Why stock-svc did not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("live stock (Redis): {0}")]
    Gate(#[from] GateError),
    #[error("messaging: {0}")]
    Messaging(#[from] ticket_platform::messaging::MessagingError),
}
use ticket_platform::config::{ConfigErrors, ConfigSource};
use ticket_platform::db::DatabaseConfig;
use ticket_platform::service::ServiceConfig;

/// Environment prefix of this service's settings (`TICKET_STOCK_GRPC__ADDR`, ...).
pub const ENV_PREFIX: &str = "TICKET_STOCK";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50052;
/// Default admin HTTP port (`/metrics`, `/livez`, `/readyz`).
pub const DEFAULT_ADMIN_PORT: u16 = 9101;
/// The gRPC services this process serves, as reflection lists them.
pub const SERVICES: &[&str] = &[
    "ticket.stock.v1.CatalogService",
    "ticket.stock.v1.StockService",
    "ticket.saga.v1.Participant",
];

#[derive(Clone, Debug)]
pub struct Config {
    pub service: ServiceConfig,
    /// Redis of the live stock (`redis.url`).
    pub redis_url: String,
    /// Connections in the Redis pool (`redis.connections`).
    pub redis_connections: usize,
    /// First part of every Redis key (`redis.key_prefix`), so deployments can share a Redis.
    pub redis_key_prefix: String,
    /// Tasks writing the ledger with group commit for the gRPC doors (`ledger.writers`).
    pub ledger_writers: usize,
    /// How often Redis is reconciled with the ledger (`drift.interval_ms`; 0 turns it off).
    pub drift_interval: Duration,
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
            "stock-svc",
            (DEFAULT_PORT, DEFAULT_ADMIN_PORT),
            "ticket_stock",
        );
        let redis_url = source.string("redis.url", "redis://127.0.0.1:6379");
        let redis_connections = source.get("redis.connections", 16usize);
        if !(1..=256).contains(&redis_connections) {
            source.invalid("redis.connections", "must be between 1 and 256");
        }
        let redis_key_prefix = source.string(
            "redis.key_prefix",
            ticket_platform::stock_keys::DEFAULT_PREFIX,
        );
        if redis_key_prefix.is_empty()
            || !redis_key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c))
        {
            source.invalid(
                "redis.key_prefix",
                "must be letters, digits, '_', '-' or ':' and not empty",
            );
        }
        let ledger_writers = source.get("ledger.writers", 4usize);
        if !(1..=64).contains(&ledger_writers) {
            source.invalid("ledger.writers", "must be between 1 and 64");
        }
        let drift_interval = source.millis("drift.interval_ms", Duration::from_secs(60));
        Self {
            service,
            redis_url,
            redis_connections,
            redis_key_prefix,
            ledger_writers,
            drift_interval,
        }
    }
}

/// Connections of the pool for reads besides a step's transaction ([`Stock::record`]).
const RECORD_CONNECTIONS: u32 = 4;

pub struct Application {
    service: Service,
    drift: Option<JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let gate = StockGate::connect(
            &config.redis_url,
            config.redis_connections,
            &config.redis_key_prefix,
        )
        .await?;
        let mut service =
            Service::build::<migration::Migrator>("stock-svc", &config.service, SERVICES).await?;
        service.needs(Dependency::redis(gate.pool().clone()));
        let record = ticket_platform::db::connect(&DatabaseConfig {
            max_connections: RECORD_CONNECTIONS,
            ..config.service.database.clone()
        })
        .await
        .map_err(StartError::from)?;
        let stock = Stock::new(
            service.db.clone(),
            record,
            gate.clone(),
            config.ledger_writers,
        );
        stock.metrics.register(&service.metrics);
        let limit = service.max_message_bytes;
        let participant = service
            .participant(
                StockCommands {
                    stock: stock.clone(),
                },
                commands::CONSUMER_GROUP,
                topic::STOCK,
                commands::TAGS,
            )
            .await?;
        let catalog = Catalog {
            db: service.db.clone(),
            gate,
            access: service.access.clone(),
        };
        let api = StockApi {
            stock: stock.clone(),
            access: service.access.clone(),
        };
        let service = service.router(|router| {
            router
                .add_service(CatalogServiceServer::new(catalog).max_decoding_message_size(limit))
                .add_service(StockServiceServer::new(api).max_decoding_message_size(limit))
                .add_service(participant)
        });
        let drift = (!config.drift_interval.is_zero())
            .then(|| DriftWatch::new(stock).spawn(config.drift_interval));
        Ok(Self { service, drift })
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

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let result = self.service.run_until_stopped(shutdown).await;
        if let Some(drift) = self.drift {
            drift.abort();
        }
        result
    }
}

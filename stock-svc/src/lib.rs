//! stock-svc: the catalog and flash-sale-safe stock (Redis Lua gate, Postgres ledger).
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod error;
pub mod gate;
pub mod migration;

use std::future::Future;
use std::net::SocketAddr;

use ticket_platform::app::{Service, StartError};
use ticket_proto::stock::v1::catalog_service_server::CatalogServiceServer;

use crate::catalog::Catalog;
use crate::gate::{GateError, StockGate};

/// Why stock-svc did not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("live stock (Redis): {0}")]
    Gate(#[from] GateError),
}
use ticket_platform::config::{ConfigErrors, ConfigSource};
use ticket_platform::service::ServiceConfig;

/// Environment prefix of this service's settings (`TICKET_STOCK_GRPC__ADDR`, ...).
pub const ENV_PREFIX: &str = "TICKET_STOCK";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50052;
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
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut source = ConfigSource::from_env(ENV_PREFIX);
        let config = Self::load(&mut source);
        source.finish().map(|()| config)
    }

    pub fn load(source: &mut ConfigSource) -> Self {
        let service = ServiceConfig::load(source, "stock-svc", DEFAULT_PORT, "ticket_stock");
        let redis_url = source.string("redis.url", "redis://127.0.0.1:6379");
        let redis_connections = source.get("redis.connections", 16usize);
        if !(1..=256).contains(&redis_connections) {
            source.invalid("redis.connections", "must be between 1 and 256");
        }
        Self {
            service,
            redis_url,
            redis_connections,
        }
    }
}

pub struct Application {
    service: Service,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let gate = StockGate::connect(&config.redis_url, config.redis_connections).await?;
        let service =
            Service::build::<migration::Migrator>("stock-svc", &config.service, SERVICES).await?;
        let catalog = Catalog {
            db: service.db.clone(),
            gate,
            admin_token: config.service.admin_token.clone(),
        };
        let service =
            service.router(|router| router.add_service(CatalogServiceServer::new(catalog)));
        Ok(Self { service })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        self.service.run_until_stopped(shutdown).await
    }
}

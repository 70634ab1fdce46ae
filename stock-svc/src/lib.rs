//! stock-svc: the catalog and flash-sale-safe stock (Redis Lua gate, Postgres ledger).
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod gate;
pub mod migration;

use std::future::Future;
use std::net::SocketAddr;

use ticket_platform::app::{Service, StartError};
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
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut source = ConfigSource::from_env(ENV_PREFIX);
        let config = Self::load(&mut source);
        source.finish().map(|()| config)
    }

    pub fn load(source: &mut ConfigSource) -> Self {
        Self {
            service: ServiceConfig::load(source, "stock-svc", DEFAULT_PORT, "ticket_stock"),
        }
    }
}

pub struct Application {
    service: Service,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let service =
            Service::build::<migration::Migrator>("stock-svc", &config.service, SERVICES).await?;
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

//! notify-svc: SMS, e-mail and push notifications and their delivery log.
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod error;
pub mod migration;
pub mod notifications;
pub mod notify_api;

use std::future::Future;
use std::net::SocketAddr;

use ticket_platform::messaging::topic;
use ticket_proto::notify::v1::notification_service_server::NotificationServiceServer;

use crate::notifications::NotifyCommands;
use crate::notify_api::NotificationApi;

use ticket_platform::app::{Service, StartError};
use ticket_platform::config::{ConfigErrors, ConfigSource};
use ticket_platform::service::ServiceConfig;

/// Environment prefix of this service's settings (`TICKET_NOTIFY_GRPC__ADDR`, ...).
pub const ENV_PREFIX: &str = "TICKET_NOTIFY";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50054;
/// The gRPC services this process serves, as reflection lists them.
pub const SERVICES: &[&str] = &[
    "ticket.notify.v1.NotificationService",
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
            service: ServiceConfig::load(source, "notify-svc", DEFAULT_PORT, "ticket_notify"),
        }
    }
}

pub struct Application {
    service: Service,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let mut service =
            Service::build::<migration::Migrator>("notify-svc", &config.service, SERVICES).await?;
        service
            .ensure_topics(&[topic::NOTIFICATION, topic::SAGA_REPLY])
            .await;
        let participant = service
            .participant(
                NotifyCommands,
                notifications::CONSUMER_GROUP,
                topic::NOTIFICATION,
                notifications::TAGS,
                &config.service.admin_token,
            )
            .await?;
        let api = NotificationApi {
            db: service.db.clone(),
        };
        let service = service.router(|router| {
            router
                .add_service(NotificationServiceServer::new(api))
                .add_service(participant)
        });
        Ok(Self { service })
    }

    /// Test switch: every message this service publishes goes out twice (same `message_id`),
    /// as a broker redelivery would.
    pub fn set_duplicate_deliveries(&self, on: bool) {
        self.service.publisher.set_duplicate_deliveries(on);
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

//! notify-svc: SMS, e-mail and push notifications and their delivery log.
//!
//! A library with a thin `main`: `Application::build(config)` then `run_until_stopped()`;
//! tests and `ticketctl` start the same library in-process on port 0.
#![forbid(unsafe_code)]

pub mod channels;
pub mod delivery;
pub mod error;
pub mod facts;
pub mod migration;
pub mod notifications;
pub mod notify_api;
pub mod templates;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ticket_platform::messaging::topic;
use ticket_proto::notify::v1::notification_service_server::NotificationServiceServer;

use crate::channels::Channels;
use crate::delivery::{Delivery, DeliverySettings};
use crate::facts::{LOOKUP_LIMIT, Sources};
use crate::notifications::NotifyCommands;
use crate::notify_api::NotificationApi;
use crate::templates::Templates;

use ticket_platform::app::{Service, StartError};
use ticket_platform::auth::{Access, BuyerTokens};
use ticket_platform::config::{ConfigErrors, ConfigSource};
use ticket_platform::service::ServiceConfig;

/// Environment prefix of this service's settings (`TICKET_NOTIFY_GRPC__ADDR`, ...).
pub const ENV_PREFIX: &str = "TICKET_NOTIFY";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50054;
/// Default admin HTTP port (`/metrics`, `/livez`, `/readyz`).
pub const DEFAULT_ADMIN_PORT: u16 = 9103;
/// The gRPC services this process serves, as reflection lists them.
pub const SERVICES: &[&str] = &[
    "ticket.notify.v1.NotificationService",
    "ticket.saga.v1.Participant",
];

#[derive(Clone, Debug)]
pub struct Config {
    pub service: ServiceConfig,
    /// Where each channel sends (`channels.*`).
    pub channels: Channels,
    /// How the delivery log is sent (`delivery.*`).
    pub delivery: DeliverySettings,
    /// order-svc's gRPC address, where the orders and the buyers' contacts are asked for
    /// (`orders.addr`; empty: nothing is asked, every channel must be `log`, which then names
    /// the buyer's user id and writes the event's line instead of its templates).
    pub orders_addr: String,
    /// stock-svc's gRPC address, where the shows are asked for (`catalog.addr`; used with
    /// `orders.addr`).
    pub catalog_addr: String,
    /// How buyers' tokens to `ListNotifications` are verified (`buyers.*`).
    pub buyers: BuyerTokens,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut source = ConfigSource::from_env(ENV_PREFIX);
        let config = Self::load(&mut source);
        source.finish().map(|()| config)
    }

    /// The defaults of every setting but the service's own (tests start the library with it).
    pub fn with_service(service: ServiceConfig) -> Self {
        let mut source = ConfigSource::from_pairs(ENV_PREFIX, []);
        let buyers = BuyerTokens::load(&mut source, service.access.dev);
        Self {
            buyers,
            service,
            ..Self::load(&mut source)
        }
    }

    pub fn load(source: &mut ConfigSource) -> Self {
        let service = ServiceConfig::load(
            source,
            "notify-svc",
            (DEFAULT_PORT, DEFAULT_ADMIN_PORT),
            "ticket_notify",
        );
        let channels = Channels::load(source);
        let delivery = DeliverySettings::load(source);
        let orders_addr = source.string("orders.addr", "");
        if !orders_addr.is_empty()
            && (!(orders_addr.starts_with("http://") || orders_addr.starts_with("https://"))
                || tonic::transport::Endpoint::from_shared(orders_addr.clone()).is_err())
        {
            source.invalid("orders.addr", "must be an http:// or https:// address");
        }
        if orders_addr.is_empty() && channels.need_contacts() {
            source.invalid(
                "orders.addr",
                "must be order-svc's address: a channel other than log sends to the buyers' \
                 contacts, which order-svc keeps",
            );
        }
        let catalog_addr = source.string("catalog.addr", "http://127.0.0.1:50052");
        if !(catalog_addr.starts_with("http://") || catalog_addr.starts_with("https://"))
            || tonic::transport::Endpoint::from_shared(catalog_addr.clone()).is_err()
        {
            source.invalid("catalog.addr", "must be an http:// or https:// address");
        }
        let buyers = BuyerTokens::load(source, service.access.dev);
        // One attempt asks order-svc and stock-svc what to say and where, then waits for the
        // provider.
        let attempt = channels.timeout + LOOKUP_LIMIT;
        if delivery.attempt_limit() < attempt {
            source.invalid(
                "delivery.lease_ms",
                format!(
                    "is {:?}: half of it bounds an attempt, which may take {attempt:?} (5 s for \
                     the order, its contact and its show, and channels.http_timeout_ms); give \
                     at least {:?}",
                    delivery.lease,
                    attempt * 2
                ),
            );
        }
        Self {
            service,
            channels,
            delivery,
            orders_addr,
            catalog_addr,
            buyers,
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
            )
            .await?;
        let sources = if config.orders_addr.is_empty() {
            None
        } else {
            Some(
                Sources::new(
                    &config.orders_addr,
                    &config.service.access.service_token,
                    &config.catalog_addr,
                    &service.clients,
                )
                .map_err(StartError::Config)?,
            )
        };
        let delivery = Delivery {
            db: service.db.clone(),
            channels: Arc::new(config.channels.clone()),
            templates: Arc::new(Templates::new().map_err(StartError::Config)?),
            sources,
            settings: config.delivery.clone(),
        };
        service.spawn_background(|stop| delivery.spawn(stop));
        let api = NotificationApi {
            db: service.db.clone(),
            access: Access::with_buyers(&config.service.access, &config.buyers, None)
                .map_err(StartError::Config)?,
        };
        let limit = service.max_message_bytes;
        let service = service.router(|router| {
            router
                .add_service(NotificationServiceServer::new(api).max_decoding_message_size(limit))
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

    /// Where the admin HTTP port (`/metrics`, `/livez`, `/readyz`) listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.service.admin_addr()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        self.service.run_until_stopped(shutdown).await
    }
}

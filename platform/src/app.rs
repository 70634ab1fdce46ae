//! The life of a service process, shared by all four: connect and migrate the database, start
//! messaging and the outbox relay, serve gRPC with health and reflection and the admin HTTP
//! port (metrics, liveness, readiness), and stop in order — health NOT_SERVING, stop consuming,
//! finish in-flight calls, flush the outbox, exit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::Readiness;
use crate::auth::Access;
use crate::grpc::{Bootstrap, GrpcError, Router};
use crate::grpc_client::Clients;
use crate::metrics::{GrpcMetrics, Metrics, OutboxMetrics};
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;
use ticket_proto::saga::v1::participant_server::ParticipantServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::messaging::{Consumer, ConsumerSettings, MessagingError, MessagingRuntime, Publisher};
use crate::outbox::{self, Relay, RelaySettings};
use crate::participant::{CommandBatches, CommandConsumer, CommandHandler, ParticipantService};
use crate::readiness::Dependency;
use crate::service::ServiceConfig;

/// How often topics that could not be created at start are tried again.
const TOPIC_RETRY: Duration = Duration::from_secs(2);
/// How long in-flight gRPC calls are given to finish once a stop began.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long closing the database pool may take at the end of a stop.
const DB_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the outbox is given to drain at shutdown.
const OUTBOX_FLUSH_GRACE: Duration = Duration::from_secs(5);
/// How long stopping consumers, the relay and the RocketMQ client may take in all.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How long the admin port is given to close at the end of a stop.
const ADMIN_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The longest a stop takes, every grace spent: a pod's termination grace period must be
/// longer (the manifests give 50 s; `tests/tests/deployment.rs` checks it).
pub const STOP_TAKES_AT_MOST: Duration = Duration::from_secs(
    DRAIN_GRACE.as_secs()
        + SHUTDOWN_GRACE.as_secs()
        + OUTBOX_FLUSH_GRACE.as_secs()
        + DB_CLOSE_GRACE.as_secs()
        + ADMIN_CLOSE_GRACE.as_secs(),
);
/// How often the outbox's backlog is measured for the metrics.
const OUTBOX_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("messaging: {0}")]
    Messaging(#[from] MessagingError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A setting the configuration check let through but the service could not use.
    #[error("{0}")]
    Config(String),
}

/// The parts of a running service that its own code uses.
pub struct Service {
    name: &'static str,
    listener: TcpListener,
    admin_addr: SocketAddr,
    /// The admin port's server, serving from the start (`/readyz` 503 until gRPC serves).
    admin: JoinHandle<()>,
    /// Stops the admin port when the service stops, or when it is dropped unstarted.
    admin_stop: CancelOnDrop,
    /// The service's metrics registry: the platform's metrics are in it; a service adds its
    /// own.
    pub metrics: Metrics,
    /// What this service's channels to others share (`grpc_client_*` metrics, TLS): for its
    /// [`crate::grpc_client`] channels.
    pub clients: Clients,
    /// The admin and service tokens this service accepts.
    pub access: Access,
    /// The largest request message its gRPC servers decode (`grpc.max_message_bytes`).
    pub max_message_bytes: usize,
    outbox_metrics: OutboxMetrics,
    ready: tokio::sync::watch::Sender<Readiness>,
    bootstrap: Bootstrap,
    pub db: DatabaseConnection,
    pub messaging: Arc<MessagingRuntime>,
    pub publisher: Arc<Publisher>,
    relay: Relay,
    consumers: Vec<Consumer>,
    /// Cancelled when the service stops; background tasks end on it.
    background_stop: CancelOnDrop,
    background: Vec<JoinHandle<()>>,
    /// What health follows (the database, and what the service adds).
    dependencies: Vec<Dependency>,
}

impl Service {
    /// Connects, migrates (when configured), binds the gRPC port and starts the outbox relay.
    /// `services` are the gRPC services the process serves, as reflection lists them.
    pub async fn build<M: MigratorTrait>(
        name: &'static str,
        config: &ServiceConfig,
        services: &[&'static str],
    ) -> Result<Self, StartError> {
        let db = crate::db::connect(&config.database).await?;
        if config.database.migrate_on_start {
            crate::db::migrate::<M>(&db, &config.database).await?;
        }
        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.grpc_addr,
                source,
            })?;
        let admin_listener = TcpListener::bind(config.admin_addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.admin_addr,
                source,
            })?;
        let admin_addr = admin_listener.local_addr().unwrap_or(config.admin_addr);
        let messaging = MessagingRuntime::start(config.messaging.clone())?;
        let metrics = Metrics::default();
        messaging.metrics().register(&metrics);
        let grpc = GrpcMetrics::default();
        grpc.register(&metrics, "server");
        let client_metrics = GrpcMetrics::default();
        client_metrics.register(&metrics, "client");
        let clients = Clients {
            metrics: client_metrics,
            tls: config.grpc.tls.client().map_err(StartError::Config)?,
        };
        let outbox_metrics = OutboxMetrics::default();
        outbox_metrics.register(&metrics);
        let publisher =
            Arc::new(Publisher::start(Arc::clone(&messaging), &format!("{name}-producer")).await?);
        let relay = Relay::spawn(db.clone(), Arc::clone(&publisher), RelaySettings::default());
        let ready = tokio::sync::watch::Sender::new(Err("starting".into()));
        let admin_stop = CancellationToken::new();
        let admin = tokio::spawn(crate::admin::serve(
            admin_listener,
            metrics.clone(),
            ready.subscribe(),
            admin_stop.clone(),
        ));
        let background_stop = CancellationToken::new();
        let gauges = tokio::spawn(outbox::measure(
            db.clone(),
            outbox_metrics.clone(),
            OUTBOX_GAUGE_INTERVAL,
            background_stop.clone(),
        ));
        Ok(Self {
            name,
            listener,
            admin_addr,
            admin,
            admin_stop: CancelOnDrop(admin_stop),
            metrics,
            clients,
            access: Access::new(&config.access),
            max_message_bytes: config.grpc.max_message_bytes,
            outbox_metrics,
            ready,
            bootstrap: Bootstrap::new(services, grpc, &config.grpc)?,
            db: db.clone(),
            messaging,
            publisher,
            relay,
            consumers: Vec::new(),
            background_stop: CancelOnDrop(background_stop),
            background: vec![gauges],
            dependencies: vec![Dependency::postgres(db.clone())],
        })
    }

    /// The address gRPC listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The address the admin HTTP port listens on (the real port when configured with 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Adds the service's own gRPC servers.
    pub fn router(mut self, add: impl FnOnce(Router) -> Router) -> Self {
        self.bootstrap = self.bootstrap.router(add);
        self
    }

    /// A background task of the service (a sweeper, a handover): `start` gets the token
    /// cancelled when the service stops, and the task is awaited (within the grace period)
    /// before the consumers stop.
    pub fn spawn_background(&mut self, start: impl FnOnce(CancellationToken) -> JoinHandle<()>) {
        self.background.push(start(self.background_stop.0.clone()));
    }

    /// Creates the (logical) topics on the broker. With the broker away the service still
    /// starts (its commands and events go over gRPC meanwhile): the topics are created in the
    /// background once the broker answers.
    pub async fn ensure_topics(&mut self, topics: &'static [&'static str]) {
        let Err(err) = self.publisher.ensure_topics(topics).await else {
            return;
        };
        tracing::warn!(error = %err, ?topics, "the broker does not answer; its topics are created once it does");
        let publisher = Arc::clone(&self.publisher);
        self.spawn_background(|stop| {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(TOPIC_RETRY) => {}
                    }
                    if publisher.ensure_topics(topics).await.is_ok() {
                        tracing::info!(?topics, "topics created");
                        return;
                    }
                }
            })
        });
    }

    /// The outbox's way around a broker that does not take messages: rows of `topics` still
    /// unpublished `after` their creation are handed to `handover` (`crate::handover`),
    /// counted in `outbox_handed_over_total`.
    pub fn spawn_handover<H: crate::handover::Handover>(
        &mut self,
        handover: H,
        topics: &[&str],
        after: Duration,
    ) {
        let (db, counter) = (self.db.clone(), self.outbox_metrics.handed_over.clone());
        self.spawn_background(|stop| {
            crate::handover::spawn(db, handover, topics, after, counter, stop)
        });
    }

    /// A dependency the service cannot do its job without besides its database: health is
    /// NOT_SERVING while it does not answer.
    pub fn needs(&mut self, dependency: Dependency) {
        self.dependencies.push(dependency);
    }

    /// A consumer stopped (before the outbox is flushed) when the service stops.
    pub fn add_consumer(&mut self, consumer: Consumer) {
        self.consumers.push(consumer);
    }

    /// Both doors of a participant: consumes `tags` of `topic` as `group` (replies go out
    /// through the outbox, rejected commands to the dead letters) and returns the
    /// `Participant` gRPC service for the router.
    pub async fn participant<H: CommandHandler>(
        &mut self,
        handler: H,
        group: &str,
        topic: &str,
        tags: &[&str],
    ) -> Result<ParticipantServer<ParticipantService<H>>, MessagingError> {
        let handler = Arc::new(handler);
        // The topic exists before the consumer starts: a consumer subscribed to a topic the
        // broker does not have yet learns of it only at its next route refresh (10 s), so the
        // first commands of a fresh system would wait that long.
        if let Err(err) = self.publisher.ensure_topics(&[topic]).await {
            tracing::warn!(error = %err, topic, "the broker does not answer; the consumer finds its topic once it does");
        }
        let consumer = Consumer::start(
            Arc::clone(&self.messaging),
            ConsumerSettings::new(group)
                .subscribe(topic, tags)
                .dead_letters(self.db.clone()),
            CommandConsumer::new(
                Arc::clone(&handler),
                self.db.clone(),
                group,
                CommandBatches {
                    max: self.messaging.config().command_batch_max,
                    concurrency: self.messaging.config().command_batch_concurrency,
                },
                crate::participant::batch_sizes(&self.metrics, group),
            ),
        )
        .await?;
        self.add_consumer(consumer);
        Ok(ParticipantServer::new(ParticipantService::new(
            handler,
            self.db.clone(),
            self.access.clone(),
        ))
        .max_decoding_message_size(self.max_message_bytes))
    }

    /// Serves until `shutdown` resolves, then stops in order.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let Self {
            name,
            listener,
            admin_addr,
            admin,
            admin_stop,
            metrics: _,
            clients: _,
            access: _,
            max_message_bytes: _,
            outbox_metrics: _,
            ready,
            bootstrap,
            db,
            messaging,
            publisher,
            relay,
            consumers,
            background_stop,
            background,
            dependencies,
        } = self;
        tracing::info!(service = name, addr = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), admin = %admin_addr, "serving gRPC and the admin port");
        // In-flight calls get DRAIN_GRACE once the stop began; one still waiting on a
        // dependency that does not answer is then cut off, so a stop always ends.
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signalled = {
            let stopping = Arc::clone(&stopping);
            async move {
                shutdown.await;
                stopping.notify_one();
            }
        };
        let served = tokio::select! {
            served = bootstrap.serve(listener, dependencies, ready, signalled) => served,
            () = async {
                stopping.notified().await;
                tokio::time::sleep(DRAIN_GRACE).await;
            } => {
                tracing::warn!(service = name, grace = ?DRAIN_GRACE, "in-flight calls did not finish within the grace period; cut off");
                Ok(())
            }
        };
        let wind_down = async {
            background_stop.0.cancel();
            for task in background {
                if let Err(err) = task.await {
                    tracing::error!(error = %err, "a background task failed");
                }
            }
            for consumer in &consumers {
                consumer.shutdown().await;
            }
            relay.stop().await;
            flush_outbox(&db, &publisher).await;
            publisher.shutdown().await;
            messaging.shutdown().await;
        };
        // Whatever is unfinished after the grace period is safe to drop: unacknowledged
        // messages are redelivered and unsent outbox rows are published by the next start.
        if tokio::time::timeout(SHUTDOWN_GRACE, wind_down)
            .await
            .is_err()
        {
            tracing::warn!(service = name, grace = ?SHUTDOWN_GRACE, "messaging did not stop within the grace period");
        }
        match tokio::time::timeout(DB_CLOSE_GRACE, db.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "closing the database pool"),
            Err(_) => tracing::warn!("the database pool did not close in time; left to the exit"),
        }
        // The admin port answers until the very end (`/readyz` 503 while stopping); a scraper
        // that holds its connection open is not waited for long.
        admin_stop.0.cancel();
        if tokio::time::timeout(ADMIN_CLOSE_GRACE, admin)
            .await
            .is_err()
        {
            tracing::warn!(
                service = name,
                "the admin port did not close in time; left to the exit"
            );
        }
        tracing::info!(service = name, "stopped");
        Ok(served?)
    }
}

/// A token cancelled when dropped: a service dropped before it ran stops what it started.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Publishes what is left in the outbox, within a grace period; what remains is published by
/// the next start (nothing is lost, the relay is at-least-once).
async fn flush_outbox(db: &DatabaseConnection, publisher: &Publisher) {
    let deadline = tokio::time::Instant::now() + OUTBOX_FLUSH_GRACE;
    while tokio::time::Instant::now() < deadline {
        match outbox::relay_once(db, publisher, 512).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "outbox not flushed at shutdown; the next start publishes it");
                return;
            }
        }
    }
}

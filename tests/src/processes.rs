//! The four services as the processes a user runs (the binaries, configured from the
//! environment), on databases, a RocketMQ namespace and Redis keys of their own, at addresses
//! fixed before they start so each can be killed (`kill -9`) and started again where the
//! others expect it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use ticket_platform::db::DatabaseConfig;
use ticket_platform::messaging::MessagingConfig;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use ticket_proto::stock::v1 as stock_pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;

use crate::stock::{TOKEN, admin, at};

/// A service of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Stock,
    Order,
    Orchestrator,
    Notify,
}

impl Service {
    pub const ALL: [Self; 4] = [Self::Stock, Self::Order, Self::Orchestrator, Self::Notify];

    pub fn binary(self) -> &'static str {
        match self {
            Self::Stock => "stock-svc",
            Self::Order => "order-svc",
            Self::Orchestrator => "orchestrator",
            Self::Notify => "notify-svc",
        }
    }

    fn env_prefix(self) -> &'static str {
        match self {
            Self::Stock => "TICKET_STOCK_",
            Self::Order => "TICKET_ORDER_",
            Self::Orchestrator => "TICKET_ORCHESTRATOR_",
            Self::Notify => "TICKET_NOTIFY_",
        }
    }
}

/// One running service process; killed when dropped.
pub struct ServiceProcess {
    child: Child,
}

impl ServiceProcess {
    /// Starts `binary` with `env` and waits for its "listening on" line.
    pub fn start(binary: &str, env: &[(String, String)]) -> Self {
        let mut child = Command::new(crate::binary(binary))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("start {binary}: {err}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a first line");
        assert!(line.contains("listening on"), "{binary} printed {line:?}");
        // Whatever else it prints is read, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child }
    }

    /// SIGTERM, as Kubernetes stops a pod; how long the process took to exit, and how it
    /// exited.
    pub fn terminate(mut self) -> (Duration, std::process::ExitStatus) {
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = self.child.wait().expect("reaped");
        (started.elapsed(), exit)
    }

    /// `kill -9`, as a crash would.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the services run on: a Postgres server (each service gets a database of its own on
/// it), Redis and a RocketMQ name server.
pub struct Dependencies {
    /// `postgres://user:password@host:port`
    pub postgres_server: String,
    pub redis_url: String,
    pub messaging: MessagingConfig,
}

impl Dependencies {
    /// The shared stack of `scripts/stack.sh`.
    pub fn shared(max_reconsume_times: i32) -> Self {
        Self {
            postgres_server: crate::postgres_server(),
            redis_url: crate::redis_url(),
            messaging: crate::messaging_config(max_reconsume_times),
        }
    }
}

/// The whole system as processes.
pub struct ProcessSystem {
    pub addrs: HashMap<Service, SocketAddr>,
    /// Each service's admin HTTP port (`/metrics`, `/livez`, `/readyz`).
    pub admins: HashMap<Service, SocketAddr>,
    pub databases: HashMap<Service, DatabaseConfig>,
    pub messaging: MessagingConfig,
    pub redis_url: String,
    pub key_prefix: String,
    /// The payment window of the sagas.
    pub payment_window: Duration,
    running: Mutex<HashMap<Service, ServiceProcess>>,
}

impl ProcessSystem {
    /// Every service on a database of its own on `on`'s Postgres, on its Redis and broker.
    pub async fn start(on: Dependencies, payment_window: Duration) -> Self {
        let mut addrs = HashMap::new();
        let mut admins = HashMap::new();
        let mut databases = HashMap::new();
        for service in Service::ALL {
            addrs.insert(
                service,
                SocketAddr::from(([127, 0, 0, 1], crate::free_port())),
            );
            admins.insert(
                service,
                SocketAddr::from(([127, 0, 0, 1], crate::free_port())),
            );
            databases.insert(
                service,
                crate::fresh_database_on(&on.postgres_server, "t_proc_").await,
            );
        }
        let system = Self {
            addrs,
            admins,
            databases,
            messaging: on.messaging,
            redis_url: on.redis_url,
            key_prefix: crate::unique("test-stock-"),
            payment_window,
            running: Mutex::new(HashMap::new()),
        };
        // Participants first: the orchestrator's consumers and order-svc's catalog need them.
        for service in [
            Service::Stock,
            Service::Notify,
            Service::Order,
            Service::Orchestrator,
        ] {
            system.up(service);
        }
        system
    }

    pub fn url(&self, service: Service) -> String {
        format!("http://{}", self.addrs[&service])
    }

    /// The environment `service` is started with.
    fn env(&self, service: Service) -> Vec<(String, String)> {
        let millis = |d: Duration| d.as_millis().to_string();
        let mut settings: Vec<(&str, String)> = vec![
            ("GRPC__ADDR", self.addrs[&service].to_string()),
            ("ADMIN__ADDR", self.admins[&service].to_string()),
            ("DATABASE__URL", self.databases[&service].url.clone()),
            ("DATABASE__MAX_CONNECTIONS", "8".into()),
            ("MESSAGING__NAME_SERVER", self.messaging.name_server.clone()),
            (
                "MESSAGING__NAMESPACE",
                self.messaging.namespace.prefix().to_owned(),
            ),
            (
                "MESSAGING__MAX_RECONSUME_TIMES",
                self.messaging.max_reconsume_times.to_string(),
            ),
            // The tests' tokens, and the `dev` profile: their buyers call without a token.
            ("PROFILE", "dev".into()),
            ("ADMIN_TOKEN", TOKEN.into()),
            ("SERVICE_TOKEN", crate::auth::SERVICE_TOKEN.into()),
        ];
        match service {
            Service::Stock => settings.extend([
                ("REDIS__URL", self.redis_url.clone()),
                ("REDIS__KEY_PREFIX", self.key_prefix.clone()),
                ("DRIFT__INTERVAL_MS", "0".into()),
            ]),
            Service::Order => settings.extend([
                ("REDIS__URL", self.redis_url.clone()),
                ("REDIS__KEY_PREFIX", self.key_prefix.clone()),
                ("CATALOG__ADDR", self.url(Service::Stock)),
                ("ORCHESTRATOR__ADDR", self.url(Service::Orchestrator)),
                ("EVENTS__FALLBACK_AFTER_MS", "1000".into()),
                ("SWEEP__PENDING_AFTER_MS", "10000".into()),
                ("SWEEP__INTERVAL_MS", "1000".into()),
                ("PAYMENTS__TOKEN", crate::auth::PAYMENT_TOKEN.into()),
                ("BUYERS__JWT_SECRET", crate::auth::BUYER_SECRET.into()),
            ]),
            Service::Orchestrator => settings.extend([
                ("PARTICIPANTS__STOCK", self.url(Service::Stock)),
                ("PARTICIPANTS__ORDER", self.url(Service::Order)),
                ("PARTICIPANTS__NOTIFY", self.url(Service::Notify)),
                ("SAGA__STEP_TIMEOUT_MS", "3000".into()),
                ("SAGA__MAX_ATTEMPTS", "30".into()),
                ("SAGA__BACKOFF_MS", "300".into()),
                ("SAGA__MAX_BACKOFF_MS", "2000".into()),
                ("SAGA__PAYMENT_WINDOW_MS", millis(self.payment_window)),
                ("TIMERS__POLL_MS", "100".into()),
                ("TRANSPORT__FALLBACK_AFTER_MS", "1000".into()),
            ]),
            // What a notification says comes from order-svc and stock-svc, as deployed.
            Service::Notify => settings.extend([
                ("ORDERS__ADDR", self.url(Service::Order)),
                ("CATALOG__ADDR", self.url(Service::Stock)),
                ("BUYERS__JWT_SECRET", crate::auth::BUYER_SECRET.into()),
            ]),
        }
        settings
            .into_iter()
            .map(|(key, value)| (format!("{}{key}", service.env_prefix()), value))
            .collect()
    }

    /// Starts `service` (again) at its address.
    pub fn up(&self, service: Service) {
        let process = ServiceProcess::start(service.binary(), &self.env(service));
        let replaced = self
            .running
            .lock()
            .expect("the processes")
            .insert(service, process);
        assert!(replaced.is_none(), "{service:?} was running already");
    }

    /// `kill -9` of `service`.
    pub fn kill(&self, service: Service) {
        let process = self.running.lock().expect("the processes").remove(&service);
        if let Some(process) = process {
            process.kill();
        }
    }

    /// SIGTERM to `service`: how long it took to exit, and how it exited.
    pub fn terminate(&self, service: Service) -> (Duration, std::process::ExitStatus) {
        let process = self.running.lock().expect("the processes").remove(&service);
        process.expect("the service is running").terminate()
    }

    /// A tier of `total` tickets on sale now, in a session where a buyer may hold
    /// `per_user_limit`; its id.
    pub async fn put_on_sale(&self, total: i64, per_user_limit: i32) -> i64 {
        let mut catalog = CatalogServiceClient::new(self.channel(Service::Stock));
        let show = catalog
            .create_show(admin(stock_pb::CreateShowRequest {
                title: "Process Night".into(),
                venue: "Arena".into(),
            }))
            .await
            .expect("show")
            .into_inner();
        let session = catalog
            .create_session(admin(stock_pb::CreateSessionRequest {
                show_id: show.show_id,
                starts_at: at(7_200),
                sale_opens_at: at(-60),
                sale_closes_at: at(3_600),
                per_user_limit,
            }))
            .await
            .expect("session")
            .into_inner();
        catalog
            .create_tier(admin(stock_pb::CreateTierRequest {
                session_id: session.session_id,
                name: "Floor".into(),
                price_cents: 5_000,
                total,
                per_user_limit: 0,
            }))
            .await
            .expect("tier")
            .into_inner()
            .tier_id
    }

    /// What `service`'s `grpc.health.v1.Health/Check` answers for the whole server; `None`
    /// when it does not answer.
    pub async fn health(&self, service: Service) -> Option<ServingStatus> {
        let answer = HealthClient::new(self.channel(service))
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(answer.into_inner().status())
    }

    /// A lazily connected channel to `service`.
    pub fn channel(&self, service: Service) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url(service))
            .expect("endpoint")
            .timeout(Duration::from_secs(10))
            .connect_lazy()
    }

    /// Stops every process; the databases are dropped.
    pub async fn stop(self) {
        for service in Service::ALL {
            self.kill(service);
        }
        for database in self.databases.values() {
            let _ = ticket_platform::db::drop_database(&database.url).await;
        }
    }
}

//! `--spawn`: the four services as processes of this run, the binaries beside `ticketctl`'s own
//! (a release `ticketctl` starts release services), each on a fresh database, all in a fresh
//! RocketMQ namespace and under a Redis key prefix of their own, configured through the
//! environment as an operator would. [`System`] stops them and drops the databases when
//! dropped, whatever happened before.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ticket_platform::db;

use super::usage::Usage;

/// How long a service may take to print its "listening on" line (it migrates its database
/// first).
const STARTUP: Duration = Duration::from_secs(60);
/// How long the services get to drain after SIGTERM before they are killed.
const GRACE: Duration = Duration::from_secs(15);

/// A service of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Stock,
    Notify,
    Order,
    Orchestrator,
}

impl Service {
    /// In the order they start: the participants before order-svc (whose catalog is stock-svc)
    /// and the orchestrator (whose consumers need the participants' topics).
    pub const ALL: [Self; 4] = [Self::Stock, Self::Notify, Self::Order, Self::Orchestrator];

    pub fn binary(self) -> &'static str {
        match self {
            Self::Stock => "stock-svc",
            Self::Notify => "notify-svc",
            Self::Order => "order-svc",
            Self::Orchestrator => "orchestrator",
        }
    }

    /// The short name in database names.
    fn name(self) -> &'static str {
        match self {
            Self::Stock => "stock",
            Self::Notify => "notify",
            Self::Order => "order",
            Self::Orchestrator => "orchestrator",
        }
    }

    fn env_prefix(self) -> &'static str {
        match self {
            Self::Stock => "TICKET_STOCK_",
            Self::Notify => "TICKET_NOTIFY_",
            Self::Order => "TICKET_ORDER_",
            Self::Orchestrator => "TICKET_ORCHESTRATOR_",
        }
    }
}

/// The spawned order-svc's `CreateOrder` limit per peer, per second and burst.
const PEER_RATE: &str = "100000";

/// The access settings the spawned services run with, as the bench prints them.
pub const LIMITS_STATED: &str = "access: production profile, tokens of this run; every buyer \
     presents its own JWT, payments the payment token; CreateOrder limited to 5/s (burst 10) \
     per buyer and 100,000/s per peer (the bench's buyers share one address)";

/// The access settings of `--open-access`, as the bench prints them.
pub const OPEN_ACCESS_STATED: &str = "access: dev profile, no credentials presented, no \
     CreateOrder limit (--open-access)";

/// What the spawned services run on, and the settings the bench chooses for them.
pub struct Settings<'a> {
    /// `postgres://user:password@host:port`: each service gets a fresh database on it.
    pub postgres: &'a str,
    pub name_server: &'a str,
    pub redis: &'a str,
    pub admin_token: &'a str,
    pub service_token: &'a str,
    /// The buyers' JWT secret and the payment callback's token.
    pub keys: &'a crate::buyers::Keys,
    pub payment_window: Duration,
    /// The orchestrator's `transport`: `rocketmq` (the design) or `grpc` (the synchronous
    /// chain it replaces).
    pub transport: &'a str,
    /// The `dev` profile, its default tokens, no limits.
    pub open_access: bool,
}

/// The running services; stopped, and their databases dropped, when dropped.
pub struct System {
    addrs: HashMap<Service, SocketAddr>,
    databases: Vec<(Service, String)>,
    running: Vec<(Service, Child)>,
    log_dir: PathBuf,
    keep_logs: bool,
}

impl System {
    pub async fn start(settings: &Settings<'_>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("where is ticketctl's own executable?")?;
        let bin_dir = exe
            .parent()
            .context("ticketctl's executable has no folder")?
            .to_owned();
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let log_dir = std::env::temp_dir().join(format!("ticketctl-flash-sale-{id}"));
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("create {}", log_dir.display()))?;
        let mut system = Self {
            addrs: HashMap::new(),
            databases: Vec::new(),
            running: Vec::new(),
            log_dir,
            keep_logs: true,
        };
        for service in Service::ALL {
            system.addrs.insert(service, free_port()?);
            let url = format!("{}/bench_fs_{id}_{}", settings.postgres, service.name());
            db::create_database(&url)
                .await
                .with_context(|| format!("create the database of {}", service.binary()))?;
            system.databases.push((service, url));
        }
        let namespace = format!("bfs{id}_");
        let key_prefix = format!("bench-fs-{id}");
        for service in Service::ALL {
            let env = system.env(service, settings, &namespace, &key_prefix);
            system.launch(&bin_dir, service, &env).await?;
        }
        Ok(system)
    }

    /// `http://host:port` of `service`.
    pub fn url(&self, service: Service) -> String {
        format!("http://{}", self.addrs[&service])
    }

    pub fn databases(&self) -> &[(Service, String)] {
        &self.databases
    }

    /// What each service uses now; a service whose figures cannot be read is left out.
    pub fn usage(&self) -> Vec<(Service, Usage)> {
        self.running
            .iter()
            .filter_map(|(service, child)| Usage::of(child.id()).ok().map(|u| (*service, u)))
            .collect()
    }

    /// Everything went well: the services' logs are removed with the rest.
    pub fn forget_logs(&mut self) {
        self.keep_logs = false;
    }

    /// The environment `service` starts with: the settings the bench chooses; the services'
    /// defaults for everything else.
    fn env(
        &self,
        service: Service,
        settings: &Settings<'_>,
        namespace: &str,
        key_prefix: &str,
    ) -> Vec<(String, String)> {
        let database = self
            .databases
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.clone())
            .unwrap_or_default();
        let mut env: Vec<(&str, String)> = vec![
            ("GRPC__ADDR", self.addrs[&service].to_string()),
            ("ADMIN__ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE__URL", database),
            ("MESSAGING__NAME_SERVER", settings.name_server.to_owned()),
            ("MESSAGING__NAMESPACE", namespace.to_owned()),
            ("PROFILE", "production".to_owned()),
            ("ADMIN_TOKEN", settings.admin_token.to_owned()),
            ("SERVICE_TOKEN", settings.service_token.to_owned()),
        ];
        match service {
            Service::Stock => env.extend([
                ("REDIS__URL", settings.redis.to_owned()),
                ("REDIS__KEY_PREFIX", key_prefix.to_owned()),
                ("DRIFT__INTERVAL_MS", "0".to_owned()),
            ]),
            Service::Order => env.extend([
                ("REDIS__URL", settings.redis.to_owned()),
                ("REDIS__KEY_PREFIX", key_prefix.to_owned()),
                ("CATALOG__ADDR", self.url(Service::Stock)),
                ("ORCHESTRATOR__ADDR", self.url(Service::Orchestrator)),
                ("BUYERS__JWT_SECRET", settings.keys.buyer_secret.clone()),
                ("PAYMENTS__TOKEN", settings.keys.payment_token.clone()),
                // Every buyer comes from this one address: the limit per peer is on, and
                // above the sale's rate; the limit per buyer is the services' default.
                ("LIMITS__CREATE_PER_BUYER__PER_SECOND", "5".to_owned()),
                ("LIMITS__CREATE_PER_BUYER__BURST", "10".to_owned()),
                ("LIMITS__CREATE_PER_PEER__PER_SECOND", PEER_RATE.to_owned()),
                ("LIMITS__CREATE_PER_PEER__BURST", PEER_RATE.to_owned()),
            ]),
            Service::Orchestrator => env.extend([
                ("PARTICIPANTS__STOCK", self.url(Service::Stock)),
                ("PARTICIPANTS__ORDER", self.url(Service::Order)),
                ("PARTICIPANTS__NOTIFY", self.url(Service::Notify)),
                (
                    "SAGA__PAYMENT_WINDOW_MS",
                    settings.payment_window.as_millis().to_string(),
                ),
                ("TRANSPORT", settings.transport.to_owned()),
            ]),
            Service::Notify => env.push(("BUYERS__JWT_SECRET", settings.keys.buyer_secret.clone())),
        }
        if settings.open_access {
            // The dev profile's own tokens and secret; no credential checked that is not
            // presented, and no limit.
            env.retain(|(key, _)| {
                !matches!(
                    *key,
                    "PROFILE"
                        | "ADMIN_TOKEN"
                        | "SERVICE_TOKEN"
                        | "BUYERS__JWT_SECRET"
                        | "PAYMENTS__TOKEN"
                        | "LIMITS__CREATE_PER_BUYER__PER_SECOND"
                        | "LIMITS__CREATE_PER_BUYER__BURST"
                        | "LIMITS__CREATE_PER_PEER__PER_SECOND"
                        | "LIMITS__CREATE_PER_PEER__BURST"
                )
            });
            env.push(("PROFILE", "dev".to_owned()));
            if service == Service::Order {
                env.push(("LIMITS__CREATE_PER_BUYER__PER_SECOND", "0".to_owned()));
            }
        }
        env.into_iter()
            .map(|(key, value)| (format!("{}{key}", service.env_prefix()), value))
            .collect()
    }

    /// Starts `service` and waits for its "listening on" line; its stderr goes to a log file,
    /// the rest of its stdout is read and dropped so it never blocks on a full pipe.
    async fn launch(
        &mut self,
        bin_dir: &Path,
        service: Service,
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let binary = bin_dir.join(service.binary());
        if !binary.exists() {
            bail!(
                "{} is not built beside ticketctl: run `cargo build --workspace --bins` \
                 (with the same profile)",
                binary.display()
            );
        }
        let log = self.log_dir.join(format!("{}.log", service.binary()));
        let stderr = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut child = Command::new(&binary)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let stdout = child.stdout.take();
        self.running.push((service, child));
        let stdout = stdout.context("the service's stdout")?;
        let (first_line, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let _ = first_line.send(stdout.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let heard = tokio::task::spawn_blocking(move || heard.recv_timeout(STARTUP)).await?;
        match heard {
            Ok(Ok(line)) if line.contains("listening on") => Ok(()),
            Ok(Ok(line)) if line.is_empty() => bail!(
                "{} stopped before it listened; see {}",
                service.binary(),
                log.display()
            ),
            Ok(Ok(line)) => bail!(
                "{} printed {line:?} instead of its \"listening on\" line; see {}",
                service.binary(),
                log.display()
            ),
            Ok(Err(err)) => bail!("reading {}'s output: {err}", service.binary()),
            Err(_) => bail!(
                "{} did not start within {STARTUP:?}; see {}",
                service.binary(),
                log.display()
            ),
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // SIGTERM to all, as Kubernetes stops pods; whoever has not exited after the grace
        // period is killed.
        for (_, child) in &self.running {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + GRACE;
        for (service, child) in &mut self.running {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!(
                    "{} did not exit within {GRACE:?} of SIGTERM; killed",
                    service.binary()
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Dropping a database is async; this may run inside the runtime, which cannot block
        // on it, so a thread of its own does it on a runtime of its own.
        let urls: Vec<String> = self.databases.drain(..).map(|(_, url)| url).collect();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                for url in &urls {
                    if let Err(err) = db::drop_database(url).await {
                        let name = url.rsplit('/').next().unwrap_or_default();
                        eprintln!("cannot drop the database {name}: {err}");
                    }
                }
            });
            std::io::Result::Ok(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("the bench's databases were not dropped");
        }
        if self.keep_logs && !self.running.is_empty() {
            eprintln!("the services' logs are in {}", self.log_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// A free port on 127.0.0.1, for a service the others must know the address of before it
/// starts.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?)
}

//! Readiness: the dependencies a service cannot do its job without (its database; Redis for
//! the services that sell), probed every second. While one does not answer, health
//! (`grpc.health.v1`) is NOT_SERVING and the admin port's `/readyz` answers 503, so a load
//! balancer or Kubernetes sends the calls elsewhere; once all answer again both say so, with
//! no restart.
//!
//! The broker is not one of them: while it is down the services still work (commands and
//! events go over gRPC), and every pod is needed for that.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often every dependency is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe that has not answered within this is a failure.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

type Probe =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A dependency and how to ask it whether it answers.
pub struct Dependency {
    name: &'static str,
    probe: Probe,
}

impl Dependency {
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            probe: Box::new(move || Box::pin(probe())),
        }
    }

    /// The service's Postgres database: `SELECT 1`.
    pub fn postgres(db: DatabaseConnection) -> Self {
        Self::new("postgres", move || {
            let db = db.clone();
            async move {
                db.execute_unprepared("SELECT 1")
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string())
            }
        })
    }

    /// A Redis pool: `PING`.
    pub fn redis(pool: fred::prelude::Pool) -> Self {
        use fred::prelude::ClientLike;
        Self::new("redis", move || {
            let pool = pool.clone();
            async move {
                pool.next()
                    .ping::<String>(None)
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string())
            }
        })
    }

    /// `Err(reason)` when the dependency did not answer within [`PROBE_TIMEOUT`].
    async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, (self.probe)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

/// Tells `/readyz` what does not answer (nothing: ready).
fn ready_now(ready: &tokio::sync::watch::Sender<crate::admin::Readiness>, failing: &[String]) {
    let now = if failing.is_empty() {
        Ok(())
    } else {
        Err(failing.join("; "))
    };
    ready.send_if_modified(|was| {
        let changed = *was != now;
        *was = now;
        changed
    });
}

/// Probes `dependencies` every [`PROBE_INTERVAL`] until `stop`, setting `services` (and the
/// server as a whole) SERVING when all answer and NOT_SERVING when one does not, and `ready`
/// to what does not answer. Returns on `stop` without touching either again, so the stop has
/// the last word.
pub(crate) async fn watch(
    dependencies: Vec<Dependency>,
    health: HealthReporter,
    services: Vec<&'static str>,
    ready: tokio::sync::watch::Sender<crate::admin::Readiness>,
    stop: CancellationToken,
) {
    let ready_to = ready;
    let mut ready = true;
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let checks = futures::future::join_all(dependencies.iter().map(|d| d.check()));
        let failing: Vec<String> = tokio::select! {
            () = stop.cancelled() => return,
            results = checks => dependencies
                .iter()
                .zip(results)
                .filter_map(|(d, result)| result.err().map(|err| format!("{}: {err}", d.name)))
                .collect(),
        };
        let now_ready = failing.is_empty();
        ready_now(&ready_to, &failing);
        if now_ready != ready {
            if now_ready {
                tracing::info!("every dependency answers again; health is SERVING");
            } else {
                tracing::warn!(failing = ?failing, "a dependency does not answer; health is NOT_SERVING");
            }
            let status = if now_ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            crate::grpc::set_status(&health, &services, status).await;
            ready = now_ready;
        }
    }
}

//! The timer poller: claims due timers (step timeouts, retries, deadlines) for a lease with
//! `FOR UPDATE SKIP LOCKED`, so replicas share them, and fires each in a transaction of its
//! own on a task of its own: a timer that fails (its transaction rolls back, and it is claimed
//! again once its lease ran out) or waits on a busy saga holds up no other. A timer is marked
//! fired in the transaction that acts on it, so a restart loses none and none fires twice.
//! Timers that can do nothing are marked fired when that becomes so, mostly long before they
//! fall due: a reply marks its attempt's timeout fired and a saga that ends marks its timers
//! fired, in the statements that record them (`saga::log::record_replies`, `saga::log::save`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::saga::definition::SagaType;
use crate::saga::engine::Engine;

/// Timers fired at once by one replica.
const IN_FLIGHT: usize = 32;
/// How long a claim keeps other replicas off a timer.
pub const LEASE: Duration = Duration::from_secs(30);

pub fn spawn<T: SagaType>(
    engine: Engine<T>,
    poll: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let free = permits.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                engine
                    .claim_timers(free, LEASE)
                    .await
                    .unwrap_or_else(|err| {
                        tracing::warn!(error = %err, "due timers could not be claimed; trying again");
                        Vec::new()
                    })
            };
            let full = free > 0 && claimed.len() == free;
            for timer in claimed {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Err(err) = engine.fire_or_release(&timer).await {
                        tracing::warn!(error = %err, saga_id = %timer.saga_id, kind = %timer.kind, "a timer could not fire; it is tried again in a second");
                    }
                    drop(permit);
                });
            }
            if full {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = stop.cancelled() => break,
            }
        }
        // Timers under way finish (or roll back) before the service stops.
        let all = u32::try_from(IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
    })
}

//! The timer poller: claims due timers (step timeouts, retries, payment deadlines) with
//! `FOR UPDATE SKIP LOCKED`, so replicas never fire one twice, and fires them in the
//! transaction that marks them fired, so a restart loses none.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::saga::engine::Engine;

const BATCH: u64 = 128;

pub fn spawn(engine: Engine, poll: Duration, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let fired = match engine.fire_due_timers(BATCH).await {
                Ok(fired) => fired,
                Err(err) => {
                    tracing::warn!(error = %err, "timers could not fire; trying again");
                    0
                }
            };
            if fired as u64 == BATCH {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = stop.cancelled() => return,
            }
        }
    })
}

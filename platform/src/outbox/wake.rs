//! Wakes this process's relays when a transaction that wrote outbox rows commits: the writer
//! calls [`committed`] after its commit, so the rows go out at once instead of at the relay's
//! next poll. Rows committed by another process (a replica) wait for their own relay or for
//! this one's poll, which stays as the floor.
//!
//! In-process on purpose: a `pg_notify` per commit was tried and made every commit slower,
//! because Postgres serialises the commits of all transactions that notify (one lock for the
//! whole cluster, held through the commit's WAL flush).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Commits of outbox rows in this process so far.
static COMMITS: AtomicU64 = AtomicU64::new(0);
/// The relays waiting for one.
static COMMITTED: Notify = Notify::const_new();

/// Tells this process's relays that a transaction wrote outbox rows and committed.
pub fn committed() {
    COMMITS.fetch_add(1, Ordering::AcqRel);
    COMMITTED.notify_waiters();
}

/// A mark to take before a round: [`Mark::wait`] then returns at once if a commit came after it.
pub fn mark() -> Mark {
    Mark(COMMITS.load(Ordering::Acquire))
}

pub struct Mark(u64);

impl Mark {
    /// Waits for a commit after this mark, at most `poll`; `false` once `stop` came instead.
    pub async fn wait(self, poll: Duration, stop: &CancellationToken) -> bool {
        let notified = COMMITTED.notified();
        tokio::pin!(notified);
        // Registered before the check, so a commit between the two is not missed.
        notified.as_mut().enable();
        if COMMITS.load(Ordering::Acquire) != self.0 {
            return true;
        }
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(poll) => true,
            () = notified => true,
        }
    }
}

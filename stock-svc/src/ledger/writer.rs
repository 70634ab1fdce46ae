//! Group commit of ledger entries for the gRPC doors: callers hand their entry to a few writer
//! tasks and wait; each task takes every entry queued at that moment (up to a batch) and
//! records them in one transaction. A caller's reply leaves only after its entry committed, or
//! was refused because its tier was checked since its script ran (see [`super`]).

use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{LedgerEntry, record, record_distinct_orders};

/// Entries recorded per transaction at most.
const BATCH: usize = 256;

type Pending = (LedgerEntry, oneshot::Sender<Result<Recorded, String>>);

/// What became of an entry handed to the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Committed (or the ledger held it already: a replay).
    Taken,
    /// Refused: its tier was loaded or checked since its script ran; run the script again.
    Refused,
}

/// A handle to the writer tasks; they stop when every handle is dropped.
#[derive(Clone)]
pub struct LedgerWriter {
    queue: mpsc::Sender<Pending>,
}

impl LedgerWriter {
    /// Starts `writers` tasks recording on `db`; each commit's size is observed in `sizes`.
    pub fn spawn(db: DatabaseConnection, writers: usize, sizes: Histogram) -> Self {
        let (queue, receiver) = mpsc::channel::<Pending>(BATCH * writers.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(db.clone(), Arc::clone(&receiver), sizes.clone()));
        }
        Self { queue }
    }

    /// Records one entry; returns once it is committed or refused.
    pub async fn write(&self, entry: LedgerEntry) -> Result<Recorded, DbErr> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send((entry, done))
            .await
            .map_err(|_| DbErr::Custom("the ledger writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| DbErr::Custom("the ledger writer has stopped".into()))?
            .map_err(DbErr::Custom)
    }
}

async fn run(
    db: DatabaseConnection,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    sizes: Histogram,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    loop {
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
        }
        let entries: Vec<LedgerEntry> = batch.iter().map(|(entry, _)| entry.clone()).collect();
        sizes.observe(entries.len() as f64);
        let result = commit(&db, &entries).await.map_err(|err| err.to_string());
        if let Err(err) = &result {
            tracing::error!(error = %err, entries = entries.len(), "ledger batch failed");
        }
        for (entry, done) in batch.drain(..) {
            let _ = done.send(result.as_ref().map_err(Clone::clone).map(|refused| {
                if refused.contains(&entry.fence.order_no) {
                    Recorded::Refused
                } else {
                    Recorded::Taken
                }
            }));
        }
    }
}

/// Records `entries`; the orders refused.
async fn commit(db: &DatabaseConnection, entries: &[LedgerEntry]) -> Result<Vec<String>, DbErr> {
    if single_statement(entries) {
        // One statement commits on its own: no BEGIN and COMMIT round trips.
        return record_distinct_orders(db.get_postgres_connection_pool(), entries).await;
    }
    let txn = db.begin().await?;
    let refused = record(&txn, entries).await?;
    txn.commit().await?;
    Ok(refused)
}

/// Whether `record` writes `entries` with one statement: distinct orders (a statement may not
/// change a row twice).
fn single_statement(entries: &[LedgerEntry]) -> bool {
    let mut orders = std::collections::HashSet::new();
    entries
        .iter()
        .all(|e| orders.insert(e.fence.order_no.as_str()))
}

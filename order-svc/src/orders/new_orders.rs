//! New orders written together: CreateOrder calls that reach the database at the same time
//! share one transaction (their orders, contacts, ORDER_CREATED events and watchers'
//! announcements, then one commit), so the burst that opens a sale costs a few commits instead
//! of a pool connection and a commit per order. A call that arrives alone waits for nobody
//! (`ticket_platform::group_commit`). A batch that fails as a whole is written again one
//! order per transaction, so an order that cannot be written fails alone.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::histogram::Histogram;
use sea_orm::{DatabaseConnection, TransactionTrait};
use ticket_platform::group_commit::{GroupCommit, NotRun};

use super::{NewOrder, Order, create};
use crate::error::Error;

/// `create.batch_max`: orders written in one transaction at most.
pub const DEFAULT_BATCH_MAX: usize = 32;
/// `create.batch_concurrency`: such transactions at once.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 4;

/// The order written for a call, or the one its (user, request id) had, with whether it is
/// new; filled once its batch committed.
type Written = Arc<Mutex<Option<(Order, bool)>>>;

#[derive(Clone)]
struct Writing {
    new: NewOrder,
    written: Written,
}

impl From<NotRun> for Error {
    fn from(not_run: NotRun) -> Self {
        Self::NotWritten(not_run.to_string())
    }
}

/// Writes new orders in batches; a handle, cheap to clone.
#[derive(Clone)]
pub struct NewOrders {
    group: GroupCommit<Writing, Error>,
}

impl NewOrders {
    /// Batches of at most `max` orders, `concurrency` at once; each batch's size is observed
    /// in `sizes` (`orders_create_batch`).
    pub fn start(db: DatabaseConnection, max: usize, concurrency: usize, sizes: Histogram) -> Self {
        let group = GroupCommit::start(max, concurrency, move |batch: Vec<Writing>| {
            let (db, sizes) = (db.clone(), sizes.clone());
            async move {
                let txn = db.begin().await?;
                let mut written = Vec::with_capacity(batch.len());
                for item in &batch {
                    written.push(create(&txn, &item.new).await?);
                }
                txn.commit().await?;
                sizes.observe(batch.len() as f64);
                if written.iter().any(|(_, created)| *created) {
                    // Their ORDER_CREATED events go out now, not at the relay's next poll.
                    ticket_platform::outbox::committed();
                }
                for (item, result) in batch.iter().zip(written) {
                    *item.written.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                }
                Ok(batch.iter().map(|_| Ok(())).collect())
            }
        });
        Self { group }
    }

    /// Writes `new` with the orders waiting beside it; `false` with the order that (user,
    /// request id) already had.
    pub async fn write(&self, new: NewOrder) -> Result<(Order, bool), Error> {
        let written = Written::default();
        self.group
            .submit(Writing {
                new,
                written: Arc::clone(&written),
            })
            .await?;
        let result = written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        result.ok_or_else(|| Error::NotWritten("its batch committed without it".into()))
    }
}

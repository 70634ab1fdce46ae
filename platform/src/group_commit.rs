//! Group commit for consumers' handlers: each handler hands in its one item (a command, a
//! reply, an order to start) and waits for its result; a task takes every item waiting, up to
//! a batch's size, and runs them as one batch (one transaction), with at most a few batches at
//! once. Under a burst a few hundred messages cost a few transactions instead of a pool
//! connection each; an item that arrives alone waits for nobody.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// One result per item of a batch, in the batch's order.
pub type Results<E> = Vec<Result<(), E>>;

/// Why an item was not run: the group commit stopped (the service is stopping), its batch's
/// task ended without answering, or the items before it failed (a cause they likely share).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotRun(pub &'static str);

/// Items of a failed batch that failed alone in a row before the rest are not run.
const FAILURES_IN_A_ROW: usize = 2;

type Waiting<I, E> = (I, oneshot::Sender<Result<(), E>>);

/// Hands items to batches; a handle, cheap to clone: the task stops when the last is dropped.
pub struct GroupCommit<I, E> {
    queue: mpsc::UnboundedSender<Waiting<I, E>>,
}

impl<I, E> Clone for GroupCommit<I, E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<I, E> GroupCommit<I, E>
where
    I: Clone + Send + 'static,
    E: From<NotRun> + std::fmt::Display + Send + 'static,
{
    /// Runs batches of up to `max` items with `run` (one result per item, in order), at most
    /// `concurrent` at a time.
    pub fn start<F, Fut>(max: usize, concurrent: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Results<E>, E>> + Send + 'static,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Waiting<I, E>>();
        let permits = Arc::new(Semaphore::new(concurrent.max(1)));
        let run = Arc::new(run);
        tokio::spawn(async move {
            loop {
                // A permit first: while every batch is running, items gather for the next.
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let Some(first) = waiting.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max.max(1) {
                    match waiting.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let run = Arc::clone(&run);
                tokio::spawn(async move {
                    let (items, waiters): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
                    let results = run_batch(&*run, items).await;
                    drop(permit);
                    for (waiter, result) in waiters.into_iter().zip(results) {
                        let _ = waiter.send(result);
                    }
                });
            }
        });
        Self { queue }
    }

    /// Runs `item` in the next batch and returns its result.
    pub async fn submit(&self, item: I) -> Result<(), E> {
        let (done, result) = oneshot::channel();
        self.queue
            .send((item, done))
            .map_err(|_| NotRun("the service is stopping"))?;
        result
            .await
            .unwrap_or_else(|_| Err(NotRun("the batch did not finish").into()))
    }
}

/// Runs a batch; when it fails as a whole, each of its items again on its own, so an item
/// that makes every statement fail (or a batch that lost a deadlock) fails alone and the
/// others are not redelivered with it. Once two items in a row failed alone as well, the
/// cause is likely theirs all (a database or Redis down): the rest fail without running, so
/// a batch does not spend a timeout per item.
async fn run_batch<I, E, F, Fut>(run: &F, items: Vec<I>) -> Results<E>
where
    I: Clone,
    E: From<NotRun> + std::fmt::Display,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Results<E>, E>>,
{
    let count = items.len();
    let err = match run(items.clone()).await {
        Ok(results) => return results,
        Err(err) if count == 1 => return vec![Err(err)],
        Err(err) => err,
    };
    tracing::warn!(error = %err, items = count, "a batch failed; its items run one by one");
    let mut results = Vec::with_capacity(count);
    let mut failed_in_a_row = 0;
    for item in items {
        if failed_in_a_row >= FAILURES_IN_A_ROW {
            results.push(Err(NotRun(
                "not run: the items before it in its batch failed one after another",
            )
            .into()));
            continue;
        }
        let result = match run(vec![item]).await {
            Ok(mut one) => one.pop().unwrap_or(Ok(())),
            Err(err) => Err(err),
        };
        failed_in_a_row = if result.is_err() {
            failed_in_a_row + 1
        } else {
            0
        };
        results.push(result);
    }
    results
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Error {
        Invalid(String),
        Database(String),
        NotRun,
    }

    impl From<NotRun> for Error {
        fn from(_: NotRun) -> Self {
            Self::NotRun
        }
    }

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    #[tokio::test]
    async fn concurrent_items_share_batches_and_each_gets_its_own_result() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let batches = Arc::new(GroupCommit::start(8, 1, move |items: Vec<u32>| {
            seen.lock().expect("not poisoned").push(items.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(items
                    .into_iter()
                    .map(|i| {
                        if i % 5 == 0 {
                            Err(Error::Invalid(format!("{i}")))
                        } else {
                            Ok(())
                        }
                    })
                    .collect())
            }
        }));
        let calls = (1..=20u32).map(|i| {
            let batches = Arc::clone(&batches);
            tokio::spawn(async move { (i, batches.submit(i).await) })
        });
        for call in calls.collect::<Vec<_>>() {
            let (i, result) = call.await.expect("the call ran");
            match result {
                Err(Error::Invalid(text)) => assert!(i % 5 == 0 && text == i.to_string()),
                Ok(()) => assert!(i % 5 != 0, "{i}"),
                other => panic!("{i}: {other:?}"),
            }
        }
        let sizes = sizes.lock().expect("not poisoned").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
        assert!(sizes.len() < 20, "no two items shared a batch: {sizes:?}");
    }

    #[tokio::test]
    async fn an_item_that_fails_its_whole_batch_fails_alone() {
        let batches = Arc::new(GroupCommit::start(64, 1, |items: Vec<u32>| async move {
            // Item 13 fails every statement of a batch it is in.
            if items.contains(&13) {
                return Err(Error::Database("invalid byte".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok(items.iter().map(|_| Ok(())).collect())
        }));
        let calls: Vec<_> = (1..=30u32)
            .map(|i| {
                let batches = Arc::clone(&batches);
                tokio::spawn(async move { (i, batches.submit(i).await) })
            })
            .collect();
        for call in calls {
            let (i, result) = call.await.expect("the call ran");
            if i == 13 {
                assert!(matches!(result, Err(Error::Database(_))), "{result:?}");
            } else {
                assert!(result.is_ok(), "{i}: {result:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_items() {
        let batches = GroupCommit::start(8, 2, |_: Vec<u32>| async {
            Err(Error::Database("down".into()))
        });
        let result = batches.submit(1).await;
        assert!(
            matches!(&result, Err(Error::Database(text)) if text == "down"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn after_two_items_in_a_row_fail_alone_the_rest_of_the_batch_is_not_run() {
        let runs = Arc::new(Mutex::new(0usize));
        let counted = Arc::clone(&runs);
        // Every run fails, as with the database down.
        let run = move |_: Vec<u32>| {
            *counted.lock().expect("not poisoned") += 1;
            async { Err(Error::Database("down".into())) }
        };
        let results = run_batch(&run, (1..=10).collect()).await;
        assert_eq!(
            *runs.lock().expect("not poisoned"),
            3,
            "the batch, then two alone"
        );
        let down = Err(Error::Database("down".into()));
        assert_eq!(results[..2], [down.clone(), down]);
        assert!(
            results[2..].iter().all(|r| *r == Err(Error::NotRun)),
            "{results:?}"
        );
    }
}

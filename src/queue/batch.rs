//! Adaptive batching of broker calls.
//!
//! Brokers charge (in latency, money and rate limits) per API call, and offer
//! batch calls that carry up to ten entries: SQS `SendMessageBatch` and
//! `DeleteMessageBatch`, SNS `PublishBatch`. A [`Batcher`] turns many
//! concurrent single-entry requests into few batch calls without adding
//! latency when the load is low:
//!
//! * while no call is in flight (fewer than
//!   [`partial_concurrency`](BatcherConfig::partial_concurrency)), whatever
//!   is pending goes out at once: a lone entry is sent alone, with no added
//!   delay;
//! * while a call is in flight, new entries wait for it and then go out
//!   together, up to [`max_entries`](BatcherConfig::max_entries) (and at
//!   most [`max_weight`](BatcherConfig::max_weight) bytes) per call;
//! * a full batch does not wait: it takes another call slot at once, up to
//!   [`max_concurrency`](BatcherConfig::max_concurrency) calls, so a heavy
//!   load is carried by several full calls in parallel.
//!
//! The batch size therefore follows the load by itself: one entry per call
//! when idle, full batches when busy. There is no timer. An entry waits at
//! most about one call's round trip, and only when a call is already under
//! way, which is when sending it alone would cost a call for little gain.
//!
//! Each submitter awaits its own entry's outcome. A batch call can partly
//! fail, so the flush function reports one result per entry; a call that
//! fails as a whole fails every entry it carried.
//!
//! A batcher owns a background task fed by a channel. The task ends once
//! every clone of the batcher has been dropped and the entries it already
//! holds have been flushed. Once submitted, an entry is flushed even if its
//! submitter stops waiting for the outcome.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::QueueError;

/// The most entries one SQS or SNS batch call accepts.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// How a [`Batcher`] sizes its calls.
///
/// Built from [`Default`] by setting fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherConfig {
    /// The most entries in one call (`1..=10` for SQS and SNS).
    pub max_entries: usize,
    /// The most calls in flight at once, counting those that carry full
    /// batches. With the default, 4, a destination sustains about 4 x 10
    /// entries per round trip (over a thousand per second in-region).
    pub max_concurrency: usize,
    /// The most calls in flight at once that may carry a partial batch.
    ///
    /// The default, 1, sends at once when nothing is in flight and otherwise
    /// lets entries gather for one round trip (~5-30 ms to SQS) into one
    /// call. More would cut that wait at moderate load but spend a call on
    /// every few entries: API calls are what SQS and SNS bill.
    pub partial_concurrency: usize,
    /// The most total weight (e.g. payload bytes) in one call; an entry
    /// heavier than this on its own still goes out, alone.
    pub max_weight: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_entries: MAX_BATCH_ENTRIES,
            max_concurrency: 4,
            partial_concurrency: 1,
            max_weight: usize::MAX,
        }
    }
}

/// What a flush function returns: one result per entry, in order, or an
/// error for the call as a whole (which fails every entry).
pub type FlushResult<R> = Result<Vec<Result<R, QueueError>>, QueueError>;

type Weigher<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

struct Entry<T, R> {
    item: T,
    reply: oneshot::Sender<Result<R, QueueError>>,
}

/// Coalesces concurrent submissions into batch calls; see the
/// [module docs](self).
///
/// Cheap to clone: clones share one background task.
pub struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<Entry<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T, R> fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

impl<T, R> Batcher<T, R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    /// A batcher that sends each batch with `flush`, every entry weighing
    /// nothing. Must be called within a tokio runtime.
    pub fn new<F, Fut>(config: BatcherConfig, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = FlushResult<R>> + Send + 'static,
    {
        Self::with_weigher(config, |_| 0, flush)
    }

    /// A batcher whose batches also stay within
    /// [`max_weight`](BatcherConfig::max_weight) as measured by `weigh`.
    /// Must be called within a tokio runtime.
    pub fn with_weigher<W, F, Fut>(config: BatcherConfig, weigh: W, flush: F) -> Self
    where
        W: Fn(&T) -> usize + Send + Sync + 'static,
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = FlushResult<R>> + Send + 'static,
    {
        let max_concurrency = config.max_concurrency.max(1);
        let config = BatcherConfig {
            max_entries: config.max_entries.max(1),
            max_concurrency,
            partial_concurrency: config.partial_concurrency.clamp(1, max_concurrency),
            max_weight: config.max_weight,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(config, Arc::new(weigh), Arc::new(flush), rx));
        Self { tx }
    }

    /// Submits one entry and waits for its own outcome.
    pub async fn submit(&self, item: T) -> Result<R, QueueError> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(Entry { item, reply })
            .map_err(|_| QueueError::Closed)?;
        outcome
            .await
            .unwrap_or_else(|_| Err(QueueError::service("the batch call ended without a result")))
    }
}

async fn run<T, R, F, Fut>(
    config: BatcherConfig,
    weigh: Weigher<T>,
    flush: Arc<F>,
    mut rx: mpsc::UnboundedReceiver<Entry<T, R>>,
) where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = FlushResult<R>> + Send + 'static,
{
    let mut pending = Pending::default();
    let mut in_flight = JoinSet::new();
    let mut open = true;
    loop {
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(entry) => pending.push(weigh(&entry.item), entry),
                None => open = false,
            },
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a batch call panicked or was cancelled");
                }
            }
        }
        // Take whatever else is already queued, so it can share a call.
        while open {
            match rx.try_recv() {
                Ok(entry) => pending.push(weigh(&entry.item), entry),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        // Full batches may use every slot; a partial one only the first
        // `partial_concurrency`, so that under load entries gather into
        // fuller calls instead of each taking a call of its own.
        while !pending.entries.is_empty() && in_flight.len() < config.max_concurrency {
            if !pending.fills_a_batch(&config) && in_flight.len() >= config.partial_concurrency {
                break;
            }
            let batch = pending.take_batch(&config);
            in_flight.spawn(call(flush.clone(), batch));
        }
        if !open && pending.entries.is_empty() && in_flight.is_empty() {
            break;
        }
    }
}

/// Entries waiting for a call, with their weights and the total weight.
struct Pending<T, R> {
    entries: VecDeque<(usize, Entry<T, R>)>,
    weight: usize,
}

impl<T, R> Default for Pending<T, R> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            weight: 0,
        }
    }
}

impl<T, R> Pending<T, R> {
    fn push(&mut self, weight: usize, entry: Entry<T, R>) {
        self.weight = self.weight.saturating_add(weight);
        self.entries.push_back((weight, entry));
    }

    /// Whether the next batch would be full: as many entries as a call takes,
    /// or more weight than it carries.
    fn fills_a_batch(&self, config: &BatcherConfig) -> bool {
        self.entries.len() >= config.max_entries || self.weight > config.max_weight
    }

    /// Takes the next batch: up to `max_entries` entries within `max_weight`
    /// (a lone heavier entry still goes, alone).
    fn take_batch(&mut self, config: &BatcherConfig) -> Vec<Entry<T, R>> {
        let mut batch = Vec::with_capacity(config.max_entries.min(self.entries.len()));
        let mut weight = 0usize;
        while batch.len() < config.max_entries {
            let Some((next, _)) = self.entries.front() else {
                break;
            };
            let total = weight.saturating_add(*next);
            if !batch.is_empty() && total > config.max_weight {
                break;
            }
            if let Some((taken, entry)) = self.entries.pop_front() {
                self.weight = self.weight.saturating_sub(taken);
                weight = total;
                batch.push(entry);
            }
        }
        batch
    }
}

async fn call<T, R, F, Fut>(flush: Arc<F>, batch: Vec<Entry<T, R>>)
where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = FlushResult<R>>,
{
    let (items, replies): (Vec<T>, Vec<_>) = batch
        .into_iter()
        .map(|entry| (entry.item, entry.reply))
        .unzip();
    let count = items.len();
    match flush(items).await {
        Ok(results) => {
            if results.len() != count {
                tracing::error!(
                    entries = count,
                    results = results.len(),
                    "a batch call returned the wrong number of results"
                );
            }
            let mut results = results.into_iter();
            for reply in replies {
                let result = results.next().unwrap_or_else(|| {
                    Err(QueueError::service(
                        "the batch call returned no result for this entry",
                    ))
                });
                // The submitter may have stopped waiting; that is fine.
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            tracing::debug!(%error, entries = count, "a batch call failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    /// A flush function that records batch sizes and takes `delay`.
    fn recording(
        sizes: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    ) -> impl Fn(Vec<u32>) -> std::pin::Pin<Box<dyn Future<Output = FlushResult<u32>> + Send>>
    + Send
    + Sync
    + 'static {
        move |items: Vec<u32>| {
            let sizes = sizes.clone();
            Box::pin(async move {
                sizes.lock().unwrap().push(items.len());
                tokio::time::sleep(delay).await;
                Ok(items.into_iter().map(|i| Ok(i * 2)).collect())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_entry_is_sent_at_once_and_alone() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::new(
            BatcherConfig::default(),
            recording(sizes.clone(), Duration::ZERO),
        );
        let started = tokio::time::Instant::now();
        assert_eq!(batcher.submit(21).await.unwrap(), 42);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_coalesce_under_load() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let config = BatcherConfig {
            max_concurrency: 2,
            ..BatcherConfig::default()
        };
        let batcher = Batcher::new(config, recording(sizes.clone(), Duration::from_millis(20)));
        let mut tasks = JoinSet::new();
        for i in 0..100u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { (i, batcher.submit(i).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.unwrap();
            assert_eq!(result.unwrap(), i * 2);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| (1..=10).contains(&n)), "{sizes:?}");
        assert!(sizes.len() <= 14, "too many calls: {sizes:?}");
        assert!(sizes.iter().filter(|&&n| n == 10).count() >= 8, "{sizes:?}");
    }

    /// Submits `first` and, 1 ms later while its call is in flight, `then`;
    /// returns the batch sizes and when each of `then` completed.
    async fn one_then_more(then: u32) -> (Vec<usize>, Vec<Duration>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::new(
            BatcherConfig::default(),
            recording(sizes.clone(), Duration::from_millis(20)),
        );
        let started = tokio::time::Instant::now();
        let first = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(0).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut tasks = JoinSet::new();
        for i in 1..=then {
            let batcher = batcher.clone();
            tasks.spawn(async move {
                batcher.submit(i).await.unwrap();
                started.elapsed()
            });
        }
        first.await.unwrap().unwrap();
        let done = tasks.join_all().await;
        let sizes = sizes.lock().unwrap().clone();
        (sizes, done)
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_waits_for_the_call_in_flight() {
        let (sizes, done) = one_then_more(3).await;
        assert_eq!(sizes, vec![1, 3]);
        // Sent when the first call ended (20 ms), done 20 ms later.
        assert!(
            done.iter().all(|&t| t == Duration::from_millis(40)),
            "{done:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_takes_a_spare_slot_at_once() {
        let (sizes, done) = one_then_more(12).await;
        // Ten went at 1 ms beside the first call; the other two waited.
        assert_eq!(sizes, vec![1, 10, 2]);
        assert_eq!(
            done.iter()
                .filter(|&&t| t == Duration::from_millis(21))
                .count(),
            10,
            "{done:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batches_respect_the_weight_limit() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let config = BatcherConfig {
            max_concurrency: 1,
            max_weight: 25,
            ..BatcherConfig::default()
        };
        let flush = recording(sizes.clone(), Duration::from_millis(5));
        let batcher = Batcher::with_weigher(config, |_: &u32| 10, flush);
        let mut tasks = JoinSet::new();
        for i in 0..7u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { batcher.submit(i).await });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap().unwrap();
        }
        let sizes = sizes.lock().unwrap().clone();
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn per_entry_failures_reach_their_submitter() {
        let config = BatcherConfig {
            max_concurrency: 1,
            ..BatcherConfig::default()
        };
        let batcher = Batcher::new(config, |items: Vec<u32>| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(items
                .into_iter()
                .map(|i| {
                    if i % 2 == 0 {
                        Ok(i)
                    } else {
                        Err(QueueError::EntryFailed {
                            code: format!("odd{i}"),
                            message: String::new(),
                            sender_fault: true,
                        })
                    }
                })
                .collect())
        });
        let mut tasks = JoinSet::new();
        for i in 0..20u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { (i, batcher.submit(i).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (i, Ok(r)) => assert!(i % 2 == 0 && r == i),
                (i, Err(QueueError::EntryFailed { code, .. })) => {
                    assert_eq!(code, format!("odd{i}"))
                }
                (i, Err(other)) => panic!("{i}: {other}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_fails_every_entry_of_its_batch() {
        let config = BatcherConfig {
            max_concurrency: 1,
            ..BatcherConfig::default()
        };
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let batcher = Batcher::new(config, move |items: Vec<u32>| {
            *counted.lock().unwrap() += 1;
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if items.contains(&0) {
                    Ok(items.into_iter().map(Ok).collect())
                } else {
                    Err(QueueError::service("throttled"))
                }
            }
        });
        let mut tasks = JoinSet::new();
        for i in 0..6u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { (i, batcher.submit(i).await) });
            if i == 0 {
                // Let entry 0 go out alone before the others arrive.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (0, result) => assert_eq!(result.unwrap(), 0),
                (_, Err(QueueError::Service { message, .. })) => assert_eq!(message, "throttled"),
                (i, other) => panic!("{i}: {other:?}"),
            }
        }
        // The first entry went alone; the other five shared one failed call.
        assert_eq!(*calls.lock().unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_submitters_and_short_results_do_not_panic() {
        let batcher = Batcher::new(BatcherConfig::default(), |_items: Vec<u32>| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(Vec::<Result<u32, QueueError>>::new())
        });
        let abandoned = tokio::time::timeout(Duration::from_millis(1), batcher.submit(1)).await;
        assert!(abandoned.is_err());
        let short = batcher.submit(2).await;
        assert!(
            matches!(short, Err(QueueError::Service { .. })),
            "{short:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_batcher_drains_what_it_holds() {
        // The flush records each batch once its call has finished; it owns
        // a clone of `alive`, so the count shows whether the task holding it
        // has ended.
        let sent = Arc::new(Mutex::new(Vec::new()));
        let alive = Arc::new(());
        let flush = {
            let (sent, alive) = (sent.clone(), alive.clone());
            move |items: Vec<u32>| {
                let _owned = &alive;
                let sent = sent.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sent.lock().unwrap().push(items.clone());
                    Ok(items.into_iter().map(Ok).collect())
                }
            }
        };
        let batcher = Batcher::new(BatcherConfig::default(), flush);
        // Polling a submission once hands its entry over; dropping it then
        // abandons only the wait for the outcome.
        assert!(batcher.submit(0).now_or_never().is_none());
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Entry 0's call is in flight; these wait for it, in the batcher.
        for i in 1..=3 {
            assert!(batcher.submit(i).now_or_never().is_none());
        }
        drop(batcher);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*sent.lock().unwrap(), vec![vec![0], vec![1, 2, 3]]);
        assert_eq!(Arc::strong_count(&alive), 1, "the task did not end");
    }
}

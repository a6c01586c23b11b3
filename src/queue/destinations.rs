//! What a batching outbox keeps per destination: the destination's adaptive
//! [`Batcher`] and its size limit, each made once and shared by every send.
//!
//! A server replies to many short-lived client queues and topics, so both
//! caches are bounded: past [`MAX_DESTINATIONS`] entries they are cleared
//! (sends in progress hold their own handles and are not affected).
//!
//! A least-privilege role may send to a destination without being allowed
//! to read its attributes; the size lookup then falls back to the service's
//! limit ([`Destinations::size_refused`]), so that such a role can still send.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use super::batch::Batcher;
use super::{QueueError, QueueMessage};

/// How many destinations' batchers and sizes are kept before the caches are
/// cleared.
pub(crate) const MAX_DESTINATIONS: usize = 1024;

/// The per-destination batchers and size limits of one outbox.
#[derive(Default)]
pub(crate) struct Destinations {
    batchers: Mutex<HashMap<String, Batcher<QueueMessage, ()>>>,
    sizes: Mutex<HashMap<String, Arc<OnceCell<usize>>>>,
    /// Whether a refused size lookup has been logged at `warn` already.
    refusal_logged: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Destinations {
    /// The batcher of `address`, made by `make` on first use.
    pub(crate) fn batcher(
        &self,
        address: &str,
        make: impl FnOnce() -> Batcher<QueueMessage, ()>,
    ) -> Batcher<QueueMessage, ()> {
        let mut batchers = lock(&self.batchers);
        if let Some(batcher) = batchers.get(address) {
            return batcher.clone();
        }
        if batchers.len() >= MAX_DESTINATIONS {
            tracing::debug!("clearing the send batchers");
            batchers.clear();
        }
        let batcher = make();
        batchers.insert(address.to_owned(), batcher.clone());
        batcher
    }

    /// The size limit of `address`: `fetch` runs once (concurrent first
    /// callers share it) and its answer is kept; a failure is not kept, so
    /// the next call asks again.
    pub(crate) async fn max_message_size<F>(
        &self,
        address: &str,
        fetch: impl FnOnce() -> F,
    ) -> Result<usize, QueueError>
    where
        F: Future<Output = Result<usize, QueueError>>,
    {
        let cell = {
            let mut sizes = lock(&self.sizes);
            if sizes.len() >= MAX_DESTINATIONS && !sizes.contains_key(address) {
                sizes.clear();
            }
            sizes.entry(address.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(fetch).await.copied()
    }

    /// The size to use for `address` when its size lookup was refused
    /// (`error`): the service's `limit`, which a fetch returns so that it is
    /// kept like an answer (asking again would be refused again). Logged at
    /// `warn` the first time, then at `debug`: a server replying to many
    /// client queues with a send-only role would otherwise warn per client.
    pub(crate) fn size_refused(
        &self,
        address: &str,
        limit: usize,
        error: &dyn std::fmt::Display,
    ) -> usize {
        if self.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(destination = address, limit, %error, "size lookup refused; using the service limit");
        } else {
            tracing::warn!(
                destination = address,
                limit,
                %error,
                "not allowed to read the destination's attributes; assuming the service's \
                 message size limit (grant GetQueueAttributes / GetTopicAttributes to use \
                 the destination's own; logged once)"
            );
        }
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn sizes_are_fetched_once_and_failures_retried() {
        let destinations = Destinations::default();
        let fetches = AtomicUsize::new(0);
        let fail = destinations
            .max_message_size("q", || async {
                fetches.fetch_add(1, Ordering::Relaxed);
                Err(QueueError::service("down"))
            })
            .await;
        assert!(fail.is_err());
        for _ in 0..3 {
            let size = destinations
                .max_message_size("q", || async {
                    fetches.fetch_add(1, Ordering::Relaxed);
                    Ok(42)
                })
                .await;
            assert_eq!(size.ok(), Some(42));
        }
        assert_eq!(fetches.load(Ordering::Relaxed), 2);
    }
}

//! Long-polls the request queue and hands each delivery to the dispatcher.
//!
//! A poller first takes an in-flight slot, then as many more as are free (up
//! to 10), and asks the queue for that many messages: it never holds messages
//! it cannot start, so a full server leaves work on the queue for other
//! replicas. An empty poll loops straight into the next long poll (no sleep);
//! a failed one backs off exponentially up to 5 s so an outage does not turn
//! into a hot loop.
//!
//! Only as many pollers poll as the load needs ([`Scale`]): one always, and
//! one more each time a receive comes back full, since a full receive means
//! messages are waiting. The newest leaves again when its receive comes
//! back short. A lone poller under moderate load receives fuller batches
//! than several would (each receive returns as soon as anything is there),
//! and an idle server makes one long poll at a time, not `pollers`.
//!
//! A long poll in progress is never abandoned: SQS may already have handed
//! messages to it, and a dropped call would leave them hidden for a whole
//! visibility timeout. On shutdown the poller lets its current poll finish
//! (at most the long-poll wait) and releases whatever it returns at once.

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ServiceFactory;
use super::dispatch::Shared;
use crate::queue::MAX_RECEIVE_BATCH;
use crate::queue::backoff::Backoff;

/// How many pollers are polling now; see the [module docs](self).
pub(super) struct Scale {
    active: watch::Sender<usize>,
    max: usize,
}

impl Scale {
    /// One poller of at most `max` polling.
    pub(super) fn new(max: usize) -> Self {
        Self {
            active: watch::Sender::new(1),
            max: max.max(1),
        }
    }

    /// Waits until poller `index` is one of those polling; false once
    /// `stop` is cancelled.
    async fn wait_turn(&self, index: usize, stop: &CancellationToken) -> bool {
        let mut active = self.active.subscribe();
        tokio::select! {
            turn = active.wait_for(|&n| index < n) => turn.is_ok(),
            _ = stop.cancelled() => false,
        }
    }

    /// Adjusts the count after poller `index` asked for `asked` messages
    /// and got `got`.
    fn after_receive(&self, index: usize, asked: usize, got: usize) {
        self.active.send_if_modified(|active| {
            if got >= MAX_RECEIVE_BATCH && *active < self.max {
                *active += 1;
                true
            } else if got < asked && index > 0 && index + 1 == *active {
                *active -= 1;
                true
            } else {
                false
            }
        });
    }

    /// Pollers polling now.
    #[cfg(test)]
    fn active(&self) -> usize {
        *self.active.borrow()
    }
}

pub(super) async fn run<F: ServiceFactory>(
    index: usize,
    scale: Arc<Scale>,
    shared: Arc<Shared<F>>,
    limiter: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::after_errors();
    loop {
        if !scale.wait_turn(index, &stop).await {
            return;
        }
        let first = tokio::select! {
            permit = limiter.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.cancelled() => return,
        };
        let mut permits = vec![first];
        while permits.len() < MAX_RECEIVE_BATCH {
            match limiter.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let received = shared
            .inbox
            .receive(permits.len(), shared.config.wait)
            .await;
        if stop.is_cancelled() {
            if let Ok(deliveries) = received {
                for delivery in deliveries {
                    if let Err(error) = shared.inbox.release(&delivery.receipt).await {
                        tracing::warn!(poller = index, %error, "could not release a message received during shutdown");
                    }
                }
            }
            return;
        }
        match received {
            Ok(deliveries) => {
                backoff.reset();
                scale.after_receive(index, permits.len(), deliveries.len());
                for delivery in deliveries {
                    let Some(permit) = permits.pop() else {
                        // The inbox returned more than asked: leave the rest
                        // to reappear after their visibility timeout.
                        tracing::warn!(poller = index, "inbox returned more messages than asked");
                        break;
                    };
                    let shared = shared.clone();
                    tracker.spawn(async move {
                        shared.handle(delivery).await;
                        drop(permit);
                    });
                }
            }
            Err(error) => {
                tracing::warn!(poller = index, %error, retry_in = ?backoff.pause(), "receive failed");
                drop(permits);
                if !backoff.wait(&stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_receives_add_pollers_up_to_the_most_and_short_ones_remove_the_newest() {
        let scale = Scale::new(3);
        assert_eq!(scale.active(), 1);
        scale.after_receive(0, 10, 10);
        scale.after_receive(0, 10, 10);
        scale.after_receive(1, 10, 10);
        assert_eq!(scale.active(), 3, "capped at the most");
        // A short receive by a poller that is not the newest changes nothing.
        scale.after_receive(1, 10, 4);
        assert_eq!(scale.active(), 3);
        scale.after_receive(2, 10, 4);
        assert_eq!(scale.active(), 2);
        scale.after_receive(1, 10, 0);
        assert_eq!(scale.active(), 1);
        // The first poller never leaves.
        scale.after_receive(0, 10, 0);
        assert_eq!(scale.active(), 1);
        // Asking for fewer (in-flight slots were short) and getting them all
        // is neither a backlog signal nor a short receive.
        scale.after_receive(0, 3, 3);
        assert_eq!(scale.active(), 1);
    }

    #[tokio::test]
    async fn a_poller_waits_for_its_turn_or_the_stop() {
        let scale = Arc::new(Scale::new(2));
        let stop = CancellationToken::new();
        assert!(scale.wait_turn(0, &stop).await);
        let waiting = {
            let (scale, stop) = (scale.clone(), stop.clone());
            tokio::spawn(async move { scale.wait_turn(1, &stop).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        scale.after_receive(0, 10, 10);
        assert!(waiting.await.unwrap());
        let stopped = {
            let (scale, stop) = (scale.clone(), stop.clone());
            tokio::spawn(async move { scale.wait_turn(5, &stop).await })
        };
        stop.cancel();
        assert!(!stopped.await.unwrap());
    }
}

//! Long-polls the request queue and hands each delivery to the dispatcher.
//!
//! A poller first takes an in-flight slot, then as many more as are free (up
//! to 10), and asks the queue for that many messages: it never holds messages
//! it cannot start, so a full server leaves work on the queue for other
//! replicas. An empty poll loops straight into the next long poll (no sleep);
//! a failed one backs off exponentially up to 5 s so an outage does not turn
//! into a hot loop.
//!
//! A long poll in progress is never abandoned: SQS may already have handed
//! messages to it, and a dropped call would leave them hidden for a whole
//! visibility timeout. On shutdown the poller lets its current poll finish
//! (at most the long-poll wait) and releases whatever it returns at once.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ServiceFactory;
use super::dispatch::Shared;
use crate::queue::MAX_RECEIVE_BATCH;
use crate::queue::backoff::Backoff;

pub(super) async fn run<F: ServiceFactory>(
    index: usize,
    shared: Arc<Shared<F>>,
    limiter: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::after_errors();
    loop {
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

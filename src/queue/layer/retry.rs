//! [`Retry`]: sends that fail for a passing reason are tried again.
//!
//! A send that fails with an error retrying can mend (the broker cannot be
//! reached, throttling: see [`QueueError::is_permanent`]) is tried again
//! after a pause of 100 ms doubling to 5 s, until it goes out, fails for
//! good, would be tried after the deadline, or the layer's stop token is
//! cancelled (the transport closed). Each attempt sends the same message,
//! FIFO deduplication id included, so a FIFO queue drops a retry whose
//! first attempt did arrive. On other queues a retry may deliver the message
//! twice: receivers must tolerate duplicates (servers answer the copy of a
//! request from their replay cache).

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

use crate::queue::backoff::Backoff;
use crate::queue::{Outbox, QueueError, QueueMessage};

/// A [`Layer`] that wraps an outbox in [`Retry`].
#[derive(Debug, Clone)]
pub struct RetryLayer {
    give_up_after: Duration,
    stop: CancellationToken,
}

impl RetryLayer {
    /// Retries each send for at most `give_up_after` from its first attempt.
    pub fn new(give_up_after: Duration) -> Self {
        Self {
            give_up_after,
            stop: CancellationToken::new(),
        }
    }

    /// Ends every retry in progress, and allows none later, once `stop` is
    /// cancelled: the send then fails with [`QueueError::Closed`].
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }
}

impl<O> Layer<O> for RetryLayer {
    type Service = Retry<O>;
    fn layer(&self, inner: O) -> Self::Service {
        Retry {
            inner,
            give_up_after: self.give_up_after,
            stop: self.stop.clone(),
        }
    }
}

/// An outbox that retries sends failing for a passing reason: after a pause
/// of 100 ms doubling to 5 s, until the send goes out, fails for good, would
/// be tried past the deadline, or the stop token is cancelled (then it fails
/// with [`QueueError::Closed`]). Each attempt sends the same message, FIFO
/// deduplication id included.
#[derive(Debug, Clone)]
pub struct Retry<O> {
    inner: O,
    give_up_after: Duration,
    stop: CancellationToken,
}

#[async_trait]
impl<O: Outbox> Outbox for Retry<O> {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        let give_up = tokio::time::Instant::now() + self.give_up_after;
        let mut backoff = Backoff::after_errors();
        loop {
            if self.stop.is_cancelled() {
                return Err(QueueError::Closed);
            }
            // A clone per attempt: the message is small beside a broker
            // call, and a retry is rare.
            let error = match self.inner.send(address, message.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_permanent() => return Err(error),
                Err(error) => error,
            };
            let pause = backoff.pause();
            if tokio::time::Instant::now() + pause > give_up {
                return Err(error);
            }
            tracing::warn!(%error, retry_in = ?pause, "message not sent; retrying");
            if !backoff.wait(&self.stop).await {
                return Err(QueueError::Closed);
            }
        }
    }

    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Fails the first `failures` sends with `error`, then accepts; keeps
    /// what each attempt carried.
    struct Flaky {
        failures: usize,
        error: QueueError,
        attempts: Mutex<Vec<QueueMessage>>,
    }

    impl Flaky {
        fn new(failures: usize, error: QueueError) -> Self {
            Self {
                failures,
                error,
                attempts: Mutex::default(),
            }
        }
        fn attempts(&self) -> Vec<QueueMessage> {
            self.attempts.lock().expect("not poisoned").clone()
        }
    }

    #[async_trait]
    impl Outbox for Flaky {
        fn accepts(&self, _: &str) -> bool {
            true
        }
        async fn send(&self, _: &str, message: QueueMessage) -> Result<(), QueueError> {
            let mut attempts = self.attempts.lock().expect("not poisoned");
            attempts.push(message);
            if attempts.len() <= self.failures {
                return Err(self.error.clone());
            }
            Ok(())
        }
        async fn max_message_size(&self, _: &str) -> Result<usize, QueueError> {
            Ok(crate::queue::DEFAULT_MAX_MESSAGE_SIZE)
        }
    }

    fn throttled() -> QueueError {
        QueueError::service("throttled")
    }

    fn fifo_message() -> QueueMessage {
        QueueMessage::new("m").for_destination("q.fifo", "g")
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_failure_is_retried_with_the_same_message() {
        let retry = RetryLayer::new(Duration::from_secs(60)).layer(Flaky::new(2, throttled()));
        let started = tokio::time::Instant::now();
        retry.send("q.fifo", fifo_message()).await.expect("sent");
        let attempts = retry.inner.attempts();
        assert_eq!(attempts.len(), 3);
        assert!(attempts[0].deduplication_id.is_some());
        assert!(attempts.iter().all(|attempt| attempt == &attempts[0]));
        // 100 ms, then 200 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let retry = RetryLayer::new(Duration::from_secs(60))
            .layer(Flaky::new(1, QueueError::TooLarge { size: 2, limit: 1 }));
        let sent = retry.send("q", QueueMessage::new("m")).await;
        assert!(matches!(sent, Err(QueueError::TooLarge { .. })), "{sent:?}");
        assert_eq!(retry.inner.attempts().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_end_at_the_deadline_with_the_last_error() {
        let retry =
            RetryLayer::new(Duration::from_secs(2)).layer(Flaky::new(usize::MAX, throttled()));
        let started = tokio::time::Instant::now();
        let sent = retry.send("q", QueueMessage::new("m")).await;
        assert!(matches!(sent, Err(QueueError::Service { .. })), "{sent:?}");
        // 0.1 + 0.2 + 0.4 + 0.8 s; the next pause (1.6 s) would pass 2 s.
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        assert_eq!(retry.inner.attempts().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_retry_in_progress() {
        let stop = CancellationToken::new();
        let retry = std::sync::Arc::new(
            RetryLayer::new(Duration::from_secs(600))
                .stop_on(stop.clone())
                .layer(Flaky::new(usize::MAX, throttled())),
        );
        let sending = tokio::spawn({
            let retry = retry.clone();
            async move { retry.send("q", QueueMessage::new("m")).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
        let sent = sending.await.expect("not panicked");
        assert!(matches!(sent, Err(QueueError::Closed)), "{sent:?}");
        let attempts = retry.inner.attempts().len();
        // And nothing is sent once stopped.
        let again = retry.send("q", QueueMessage::new("m")).await;
        assert!(matches!(again, Err(QueueError::Closed)), "{again:?}");
        assert_eq!(retry.inner.attempts().len(), attempts);
    }
}

//! The one backoff policy of every poll loop: a pause that doubles on each
//! consecutive miss, up to a ceiling, and starts over after a success.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff between `start` and `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    start: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Backoff after a failed broker call: 100 ms doubling to 5 s, so an
    /// outage neither turns into a hot loop nor delays recovery for long.
    pub(crate) const fn after_errors() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// A backoff from `start` doubling up to `max`.
    pub(crate) const fn new(start: Duration, max: Duration) -> Self {
        Self {
            start,
            max,
            next: start,
        }
    }

    /// The pause the next [`wait`](Self::wait) takes.
    pub(crate) fn pause(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current pause, then doubles it. Returns false, early,
    /// when `stop` is cancelled.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = stop.cancelled() => false,
        }
    }

    /// Starts over from the shortest pause.
    pub(crate) fn reset(&mut self) {
        self.next = self.start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_ceiling_and_resets() {
        let stop = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let mut pauses = Vec::new();
        for _ in 0..4 {
            pauses.push(backoff.pause());
            assert!(backoff.wait(&stop).await);
        }
        assert_eq!(pauses, [10, 20, 35, 35].map(Duration::from_millis));
        backoff.reset();
        assert_eq!(backoff.pause(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!backoff.wait(&stop).await);
    }
}

//! Keeps one request hidden from other consumers while it runs, within the
//! broker's ceiling on a message's total visibility.
//!
//! SQS lets a received message be kept hidden for at most 12 h from its
//! receipt; past that every extension fails and the message reappears, to
//! be run again by whichever replica receives it. So extensions are capped
//! at the ceiling, and the request's run is ended (see [`Heartbeat::ends_at`])
//! early enough before it that the error reply and the ack still go out
//! while the request is hidden.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::queue::{Inbox, Receipt};

/// The least time between two extensions.
const MIN_EVERY: Duration = Duration::from_millis(100);

/// The most time kept before the ceiling for ending a call, answering it
/// and acking it (a tenth of the ceiling when that is less).
const MAX_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The heartbeat of one request: see the module documentation.
pub(super) struct Heartbeat {
    inbox: Arc<dyn Inbox>,
    receipt: Receipt,
    /// The queue's visibility timeout: each extension's length.
    visibility: Duration,
    /// When the request was received, as near as this process knows.
    received: Instant,
    /// The broker's cap on the request's total visibility, from `received`.
    ceiling: Duration,
}

impl Heartbeat {
    /// The heartbeat of the delivery `receipt` of `inbox`, received at
    /// `received`, that may be kept hidden for `ceiling` from then.
    pub(super) fn new(
        inbox: Arc<dyn Inbox>,
        receipt: Receipt,
        received: Instant,
        ceiling: Duration,
    ) -> Self {
        let visibility = inbox.info().visibility_timeout;
        Self {
            inbox,
            receipt,
            visibility,
            received,
            ceiling,
        }
    }

    /// Time kept before the ceiling to end the call and settle it.
    fn margin(&self) -> Duration {
        (self.ceiling / 10).min(MAX_MARGIN)
    }

    /// When the call must end (cancelled and answered with a timeout error),
    /// so that its reply and ack go out before the ceiling.
    pub(super) fn ends_at(&self) -> Instant {
        self.received + self.ceiling.saturating_sub(self.margin())
    }

    /// The ceiling, for the error that ends a call at it.
    pub(super) fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// The latest this request is kept hidden until: half the margin before
    /// the ceiling, the other half allowing for the time between the
    /// broker's receipt and `received`.
    fn hidden_until_at_most(&self) -> Instant {
        self.received + self.ceiling.saturating_sub(self.margin() / 2)
    }

    /// Extends the request's visibility every half visibility timeout, for
    /// as long as it is polled (it never completes): the caller drops it
    /// when the request is settled. Each attempt is bounded, so a broker
    /// that accepts the call and does not answer holds up only that attempt:
    /// the next goes out on time, and succeeds as soon as the broker
    /// answers again.
    pub(super) async fn keep_hidden(&self) {
        if self.visibility.is_zero() {
            return std::future::pending().await;
        }
        let every = (self.visibility / 2).max(MIN_EVERY);
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = ticks.tick().await;
            let left = self.hidden_until_at_most().saturating_duration_since(now);
            let extension = self.visibility.min(left);
            if extension.is_zero() {
                // At the ceiling: the call is ended by `ends_at`, not here.
                continue;
            }
            match tokio::time::timeout(every, self.inbox.extend(&self.receipt, extension)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not extend visibility; the request may be redelivered");
                }
                Err(_) => {
                    tracing::warn!(
                        waited = ?every,
                        "visibility extension not answered; trying again"
                    );
                }
            }
        }
    }
}

/// `duration` as people write it: `12 h`, `90 s` or `1500 ms`.
pub(super) fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        format!("{} ms", duration.as_millis())
    } else if secs != 0 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs != 0 && secs.is_multiple_of(60) && secs >= 600 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::{MemoryBroker, MemoryQueueOptions};

    #[test]
    fn durations_read_as_written() {
        assert_eq!(human(Duration::from_secs(12 * 3600)), "12 h");
        assert_eq!(human(Duration::from_secs(6)), "6 s");
        assert_eq!(human(Duration::from_secs(1200)), "20 min");
        assert_eq!(human(Duration::from_millis(1500)), "1500 ms");
    }

    #[tokio::test]
    async fn the_call_ends_before_the_ceiling_with_room_to_settle() {
        let broker = MemoryBroker::new();
        let queue = broker.create_queue("q", MemoryQueueOptions::default());
        let inbox: Arc<dyn Inbox> = Arc::new(broker.inbox(&queue).expect("inbox"));
        let received = Instant::now();
        let ceiling = Duration::from_secs(12 * 3600);
        let heartbeat = Heartbeat::new(inbox, Receipt("r".into()), received, ceiling);
        assert_eq!(heartbeat.ends_at(), received + ceiling - MAX_MARGIN);
        assert!(heartbeat.hidden_until_at_most() > heartbeat.ends_at());
        assert!(heartbeat.hidden_until_at_most() < received + ceiling);
    }
}

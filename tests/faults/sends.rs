//! [`RecordingOutbox`]: an outbox that records every send attempt made
//! through it and how it ended, so that a scenario can show which sends
//! failed and were retried, or that nothing was sent for a message at all
//! (even to an address no test can watch).

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use asyncmcp::queue::{Outbox, QueueError, QueueMessage};

/// One call of [`Outbox::send`].
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// When it began.
    pub at: tokio::time::Instant,
    /// Where to.
    pub address: String,
    /// The message's body.
    pub body: String,
    /// The error it ended with, or `None` when the broker accepted it.
    pub error: Option<String>,
}

/// Wraps an outbox and records each send through it. Cheap to clone:
/// clones share the record.
#[derive(Clone)]
pub(crate) struct RecordingOutbox<O> {
    inner: O,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl<O> RecordingOutbox<O> {
    /// Records the sends made through `inner`.
    pub(crate) fn new(inner: O) -> Self {
        Self {
            inner,
            attempts: Arc::default(),
        }
    }

    /// The attempts so far, in the order they ended.
    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl<O: Outbox> Outbox for RecordingOutbox<O> {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        let at = tokio::time::Instant::now();
        let body = message.body.clone();
        let result = self.inner.send(address, message).await;
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Attempt {
                at,
                address: address.to_owned(),
                body,
                error: result.as_ref().err().map(ToString::to_string),
            });
        result
    }

    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

/// The attempts whose body contains `marker`, oldest first.
pub(crate) fn attempts_of(attempts: &[Attempt], marker: &str) -> Vec<Attempt> {
    let mut of: Vec<_> = attempts
        .iter()
        .filter(|attempt| attempt.body.contains(marker))
        .cloned()
        .collect();
    of.sort_by_key(|attempt| attempt.at);
    of
}

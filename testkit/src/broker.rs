//! The seam between the broker-generic tests and a broker: [`TestBroker`]
//! makes, opens and removes queues, and [`QueueSpec`] says which attributes
//! a test needs of a queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use asyncmcp::queue::{Inbox, Outbox};

/// Attributes of a test queue; `None` keeps the broker's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueSpec {
    /// How long a received message stays hidden unless extended.
    pub visibility_timeout: Option<Duration>,
    /// The largest message the queue accepts, in bytes.
    pub max_message_size: Option<usize>,
}

/// What the scenarios and the contract suite need of a broker.
///
/// An address is whatever the broker's [`Outbox`] sends to: a queue, or a
/// topic with a queue subscribed to it (whose [`inbox`](Self::inbox) is then
/// that queue's).
#[async_trait]
pub trait TestBroker: Send + Sync {
    /// Creates a fresh queue (unique name) made to `spec` and returns its
    /// address.
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String;
    /// Creates a fresh queue with default attributes.
    async fn create_queue(&self, prefix: &str) -> String {
        self.create_queue_with(prefix, QueueSpec::default()).await
    }
    /// An inbox on `address`.
    async fn inbox(&self, address: &str) -> Arc<dyn Inbox>;
    /// An outbox for every queue of this broker.
    fn outbox(&self) -> Arc<dyn Outbox>;
    /// Deletes a queue made by `create_queue`.
    async fn delete_queue(&self, address: &str);
    /// Messages in the queue, visible or in flight.
    async fn depth(&self, address: &str) -> usize;
}

/// `prefix` plus a random suffix: a valid SQS queue or SNS topic name (at
/// most 80 characters), unique to the test that made it.
pub fn unique_name(prefix: &str) -> String {
    let mut name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    if name.len() > 80 {
        name.drain(..name.len() - 80);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_differ_and_fit_a_queue_name() {
        let (a, b) = (unique_name("requests"), unique_name("requests"));
        assert_ne!(a, b);
        assert!(a.starts_with("requests-"), "{a}");
        let long = unique_name(&"x".repeat(100));
        assert_eq!(long.len(), 80, "{long}");
        assert!(
            long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{long}"
        );
    }
}

//! [`UnwrapEnvelope`]: takes SNS notification envelopes off what an inbox
//! receives.
//!
//! A queue subscribed to a topic without raw message delivery receives each
//! published message wrapped in a JSON envelope (see
//! [`wire::envelope`](crate::wire::envelope)). Unwrapped here, once, right
//! above the broker, everything above sees the message as it was published,
//! whatever the subscription's delivery mode: what is decoded, what a
//! signature covers, what identifies a request, what is dead-lettered.

use std::time::Duration;

use async_trait::async_trait;
use tower_layer::Layer;

use crate::queue::{Delivery, Inbox, QueueError, QueueInfo, Receipt};
use crate::wire::envelope;

/// A [`Layer`] that wraps an inbox in [`UnwrapEnvelope`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UnwrapEnvelopeLayer;

impl<I> Layer<I> for UnwrapEnvelopeLayer {
    type Service = UnwrapEnvelope<I>;
    fn layer(&self, inner: I) -> Self::Service {
        UnwrapEnvelope { inner }
    }
}

/// An inbox whose deliveries are out of any SNS envelope. Messages that are
/// not envelopes (raw deliveries, anything else) pass unchanged.
#[derive(Debug, Clone)]
pub struct UnwrapEnvelope<I> {
    inner: I,
}

impl<I> UnwrapEnvelope<I> {
    /// The wrapped inbox.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

#[async_trait]
impl<I: Inbox> Inbox for UnwrapEnvelope<I> {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let mut deliveries = self.inner.receive(max, wait).await?;
        for delivery in &mut deliveries {
            if let Some(message) = envelope::unwrap(&delivery.message) {
                delivery.message = message;
            }
        }
        Ok(deliveries)
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.ack(receipt).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.release(receipt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::{MemoryBroker, MemoryQueueOptions};
    use crate::queue::{Outbox, QueueMessage};

    #[tokio::test]
    async fn envelopes_come_off_and_raw_messages_pass() {
        let broker = MemoryBroker::new();
        let queue = broker.create_queue("q", MemoryQueueOptions::default());
        let inbox = UnwrapEnvelopeLayer.layer(broker.inbox(&queue).expect("queue exists"));
        let envelope = serde_json::json!({
            "Type": "Notification",
            "Message": "{\"jsonrpc\":\"2.0\"}",
            "MessageAttributes": {"ClientId": {"Type": "String", "Value": "c-1"}},
        });
        let outbox = broker.outbox();
        outbox
            .send(&queue, QueueMessage::new(envelope.to_string()))
            .await
            .expect("sent");
        outbox
            .send(
                &queue,
                QueueMessage::new("raw").with_string("ClientId", "c-2"),
            )
            .await
            .expect("sent");
        let mut received = inbox.receive(10, Duration::ZERO).await.expect("received");
        received.sort_by(|a, b| a.message.body.cmp(&b.message.body));
        let bodies: Vec<_> = received.iter().map(|d| d.message.body.as_str()).collect();
        assert_eq!(bodies, ["raw", "{\"jsonrpc\":\"2.0\"}"]);
        assert_eq!(received[1].message.attribute("ClientId"), Some("c-1"));
        assert_eq!(received[0].message.attribute("ClientId"), Some("c-2"));
        // Settling goes to the broker unchanged.
        for delivery in &received {
            inbox.ack(&delivery.receipt).await.expect("acked");
        }
        assert_eq!(broker.depth(&queue), (0, 0));
    }
}

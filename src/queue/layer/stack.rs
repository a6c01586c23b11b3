//! The one order in which the builders stack layers (see [`layer`](super)):
//!
//! ```text
//! inbox:  broker → UnwrapEnvelope → yours, in the order added → Verify
//! outbox: broker → yours, in the order added → Sign
//! ```

use std::sync::Arc;

use tower_layer::Layer;

use super::{SignLayer, UnwrapEnvelopeLayer, VerifyLayer};
use crate::queue::{Inbox, Outbox};

/// Wraps an inbox in a layer of the user's.
type WrapInbox = Box<dyn FnOnce(Arc<dyn Inbox>) -> Arc<dyn Inbox> + Send>;
/// Wraps an outbox in a layer of the user's.
type WrapOutbox = Box<dyn FnOnce(Arc<dyn Outbox>) -> Arc<dyn Outbox> + Send>;

/// The layers a builder was given, kept until it builds.
#[derive(Default)]
pub(crate) struct Layers {
    inbox: Vec<WrapInbox>,
    outbox: Vec<WrapOutbox>,
}

/// An inbox and outbox wrapped in every layer.
pub(crate) struct Stacked {
    pub(crate) inbox: Arc<dyn Inbox>,
    /// Signs when signing is on.
    pub(crate) outbox: Arc<dyn Outbox>,
    /// The same outbox without signing.
    pub(crate) unsigned_outbox: Arc<dyn Outbox>,
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers")
            .field("inbox", &self.inbox.len())
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

impl Layers {
    /// Adds a layer of the inbox, wrapping those added before.
    pub(crate) fn push_inbox<L>(&mut self, layer: L)
    where
        L: Layer<Arc<dyn Inbox>> + Send + 'static,
        L::Service: Inbox,
    {
        self.inbox
            .push(Box::new(move |inbox| Arc::new(layer.layer(inbox))));
    }

    /// Adds a layer of the outbox, wrapping those added before.
    pub(crate) fn push_outbox<L>(&mut self, layer: L)
    where
        L: Layer<Arc<dyn Outbox>> + Send + 'static,
        L::Service: Outbox,
    {
        self.outbox
            .push(Box::new(move |outbox| Arc::new(layer.layer(outbox))));
    }

    /// Wraps the broker's `inbox` and `outbox` in the layers, with signature
    /// checks (`verify`) and signing (`sign`) outermost when given.
    pub(crate) fn stack(
        self,
        inbox: Arc<dyn Inbox>,
        outbox: Arc<dyn Outbox>,
        verify: Option<VerifyLayer>,
        sign: Option<SignLayer>,
    ) -> Stacked {
        let mut inbox: Arc<dyn Inbox> = Arc::new(UnwrapEnvelopeLayer.layer(inbox));
        for wrap in self.inbox {
            inbox = wrap(inbox);
        }
        if let Some(verify) = verify {
            inbox = Arc::new(verify.layer(inbox));
        }
        let mut unsigned_outbox = outbox;
        for wrap in self.outbox {
            unsigned_outbox = wrap(unsigned_outbox);
        }
        let outbox = match sign {
            Some(sign) => Arc::new(sign.layer(unsigned_outbox.clone())),
            None => unsigned_outbox.clone(),
        };
        Stacked {
            inbox,
            outbox,
            unsigned_outbox,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::queue::memory::{MemoryBroker, MemoryQueueOptions};
    use crate::queue::{Delivery, QueueError, QueueInfo, QueueMessage, Receipt};
    use crate::wire::signing::{Signing, SigningKeys};

    /// Records, on the way out, the attributes a message had when it passed,
    /// and tags it with `name` (so outer layers see inner ones' work).
    struct Tag<T> {
        name: &'static str,
        inner: T,
        seen: Arc<Mutex<Vec<String>>>,
    }

    struct TagLayer(&'static str, Arc<Mutex<Vec<String>>>);

    impl<T> Layer<T> for TagLayer {
        type Service = Tag<T>;
        fn layer(&self, inner: T) -> Tag<T> {
            Tag {
                name: self.0,
                inner,
                seen: self.1.clone(),
            }
        }
    }

    #[async_trait]
    impl<T: Outbox> Outbox for Tag<T> {
        fn accepts(&self, address: &str) -> bool {
            self.inner.accepts(address)
        }
        async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
            let signed = message.attribute(crate::wire::attr::SIGNATURE).is_some();
            self.seen
                .lock()
                .expect("not poisoned")
                .push(format!("{} saw signed={signed}", self.name));
            self.inner.send(address, message).await
        }
        async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
            self.inner.max_message_size(address).await
        }
    }

    #[async_trait]
    impl<T: Inbox> Inbox for Tag<T> {
        fn info(&self) -> &QueueInfo {
            self.inner.info()
        }
        async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
            let deliveries = self.inner.receive(max, wait).await?;
            for delivery in &deliveries {
                // The envelope is off below every layer of the user's.
                self.seen
                    .lock()
                    .expect("not poisoned")
                    .push(format!("{} got {}", self.name, delivery.message.body));
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

    #[tokio::test]
    async fn layers_stack_in_the_documented_order() {
        let broker = MemoryBroker::new();
        let queue = broker.create_queue("q", MemoryQueueOptions::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut layers = Layers::default();
        layers.push_inbox(TagLayer("first", seen.clone()));
        layers.push_inbox(TagLayer("second", seen.clone()));
        layers.push_outbox(TagLayer("out", seen.clone()));
        let keys = SigningKeys::new(vec![1; 32], None).expect("32-byte key");
        let stacked = layers.stack(
            Arc::new(broker.inbox(&queue).expect("queue exists")),
            Arc::new(broker.outbox()),
            Some(VerifyLayer::new(Signing {
                keys: keys.clone(),
                required: true,
            })),
            Some(SignLayer::new(keys)),
        );
        // Signed above the user's outbox layer: it sees the signature.
        stacked
            .outbox
            .send(&queue, QueueMessage::new("signed"))
            .await
            .expect("sent");
        stacked
            .unsigned_outbox
            .send(&queue, QueueMessage::new("unsigned"))
            .await
            .expect("sent");
        // An envelope comes off before the user's inbox layers see it.
        let envelope = serde_json::json!({"Type": "Notification", "Message": "wrapped"});
        broker
            .outbox()
            .send(&queue, QueueMessage::new(envelope.to_string()))
            .await
            .expect("sent");
        let mut received = Vec::new();
        while received.len() < 3 {
            received.extend(
                stacked
                    .inbox
                    .receive(10, Duration::ZERO)
                    .await
                    .expect("received"),
            );
        }
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(seen[..2], ["out saw signed=true", "out saw signed=false"]);
        for body in ["signed", "unsigned", "wrapped"] {
            let first = seen.iter().position(|s| *s == format!("first got {body}"));
            let second = seen.iter().position(|s| *s == format!("second got {body}"));
            assert!(first.is_some() && first < second, "{body}: {seen:?}");
        }
        // Verify is outermost: it refused the unsigned and wrapped ones.
        received.sort_by(|a, b| a.message.body.cmp(&b.message.body));
        let refused: Vec<bool> = received.iter().map(|d| d.refused.is_some()).collect();
        assert_eq!(refused, [false, true, true], "signed, unsigned, wrapped");
    }
}

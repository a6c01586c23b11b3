//! [`Sign`] and [`Verify`]: message signatures as layers (the scheme is
//! [`wire::signing`](crate::wire::signing)).
//!
//! [`Sign`] signs every message an outbox sends. [`Verify`] checks every
//! message an inbox receives and, when a signature is refused (missing where
//! one is required, not verifying, or, with a maximum age, sent too long
//! ago), marks the delivery [`refused`](crate::queue::Delivery::refused)
//! with a [`SignatureRefused`] rather than settling it: the consumer decides
//! what a refused message gets (see [`layer`](super)).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tower_layer::Layer;

use crate::queue::{
    Delivery, Inbox, Outbox, QueueError, QueueInfo, QueueMessage, Receipt, Refused,
};
use crate::wire::attr;
use crate::wire::signing::{self, Signing, SigningError, SigningKeys, StaleMessage};

/// Why [`Verify`] refused a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureRefused {
    /// Its signature is missing (where one is required), malformed, or does
    /// not verify.
    #[error("message signature refused: {0}")]
    Signature(SigningError),
    /// Its signature verifies but it was sent too long ago (or claims a
    /// time too far ahead): a captured message sent again.
    #[error("message refused: {0}")]
    Stale(StaleMessage),
}

/// A [`Layer`] that wraps an outbox in [`Sign`].
#[derive(Debug, Clone)]
pub struct SignLayer {
    keys: SigningKeys,
}

impl SignLayer {
    /// Signs with the current key of `keys`.
    pub fn new(keys: SigningKeys) -> Self {
        Self { keys }
    }
}

impl<O> Layer<O> for SignLayer {
    type Service = Sign<O>;
    fn layer(&self, inner: O) -> Self::Service {
        Sign {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// An outbox that signs every message it sends (replacing any signature it
/// had). Nothing may add an attribute below it: that would break the
/// signature.
#[derive(Debug, Clone)]
pub struct Sign<O> {
    inner: O,
    keys: SigningKeys,
}

#[async_trait]
impl<O: Outbox> Outbox for Sign<O> {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }
    async fn send(&self, address: &str, mut message: QueueMessage) -> Result<(), QueueError> {
        self.keys.sign(&mut message);
        self.inner.send(address, message).await
    }
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

/// A [`Layer`] that wraps an inbox in [`Verify`].
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    signing: Arc<Signing>,
    max_age: Option<Duration>,
}

impl VerifyLayer {
    /// Checks signatures under `signing`'s keys; unsigned messages pass
    /// unless it requires signatures. No age limit.
    pub fn new(signing: Signing) -> Self {
        Self {
            signing: Arc::new(signing),
            max_age: None,
        }
    }

    /// Also refuses a signed message sent longer than `max_age` ago (by its
    /// signed `Timestamp`; see [`signing::check_fresh`]). `None`: any age.
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }
}

impl<I> Layer<I> for VerifyLayer {
    type Service = Verify<I>;
    fn layer(&self, inner: I) -> Self::Service {
        Verify {
            inner,
            signing: self.signing.clone(),
            max_age: self.max_age,
        }
    }
}

/// An inbox that checks the signature of every message it receives and
/// marks the deliveries it refuses.
#[derive(Debug, Clone)]
pub struct Verify<I> {
    inner: I,
    signing: Arc<Signing>,
    max_age: Option<Duration>,
}

impl<I> Verify<I> {
    /// Why `message` is refused, if it is.
    fn check(&self, message: &QueueMessage, now: SystemTime) -> Result<(), SignatureRefused> {
        self.signing
            .check(message)
            .map_err(SignatureRefused::Signature)?;
        // Its signature proves who sent it, not that it is not an old one
        // sent again: a signed message is checked for age too.
        if let Some(max_age) = self.max_age
            && message.attribute(attr::SIGNATURE).is_some()
        {
            signing::check_fresh(message, now, max_age).map_err(SignatureRefused::Stale)?;
        }
        Ok(())
    }
}

#[async_trait]
impl<I: Inbox> Inbox for Verify<I> {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let mut deliveries = self.inner.receive(max, wait).await?;
        let now = SystemTime::now();
        for delivery in &mut deliveries {
            // A delivery refused below keeps that first reason.
            if delivery.refused.is_none()
                && let Err(refused) = self.check(&delivery.message, now)
            {
                delivery.refused = Some(Refused::new(refused));
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

    fn keys(byte: u8) -> SigningKeys {
        SigningKeys::new(vec![byte; 32], None).expect("32-byte key")
    }

    /// Sends `messages` through a [`Sign`] outbox when `signed`, else as
    /// they are, and receives them through a [`Verify`] inbox.
    async fn round_trip(
        sender: Option<SigningKeys>,
        verify: VerifyLayer,
        messages: Vec<QueueMessage>,
    ) -> Vec<Delivery> {
        let broker = MemoryBroker::new();
        let queue = broker.create_queue("q", MemoryQueueOptions::default());
        let inbox = verify.layer(broker.inbox(&queue).expect("queue exists"));
        let count = messages.len();
        for message in messages {
            match &sender {
                Some(keys) => SignLayer::new(keys.clone())
                    .layer(broker.outbox())
                    .send(&queue, message)
                    .await
                    .expect("sent"),
                None => broker.outbox().send(&queue, message).await.expect("sent"),
            }
        }
        let mut received = inbox.receive(10, Duration::ZERO).await.expect("received");
        assert_eq!(received.len(), count);
        received.sort_by(|a, b| a.message.body.cmp(&b.message.body));
        received
    }

    fn refusal(delivery: &Delivery) -> Option<SignatureRefused> {
        delivery.refused.as_ref().map(|refused| {
            refused
                .downcast_ref::<SignatureRefused>()
                .expect("a signature refusal")
                .clone()
        })
    }

    #[tokio::test]
    async fn signed_messages_verify_and_others_are_marked() {
        let required = VerifyLayer::new(Signing {
            keys: keys(1),
            required: true,
        });
        let good = round_trip(
            Some(keys(1)),
            required.clone(),
            vec![QueueMessage::new("a")],
        )
        .await;
        assert_eq!(refusal(&good[0]), None);
        assert!(good[0].message.attribute(attr::SIGNATURE).is_some());

        let foreign = round_trip(
            Some(keys(2)),
            required.clone(),
            vec![QueueMessage::new("a")],
        )
        .await;
        assert_eq!(
            refusal(&foreign[0]),
            Some(SignatureRefused::Signature(SigningError::Mismatch))
        );

        let unsigned = round_trip(None, required, vec![QueueMessage::new("a")]).await;
        assert_eq!(
            refusal(&unsigned[0]),
            Some(SignatureRefused::Signature(SigningError::Missing))
        );
        assert_eq!(
            unsigned[0]
                .refused
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("message signature refused: message is not signed")
        );

        // Optional signatures excuse a missing one only.
        let optional = VerifyLayer::new(Signing {
            keys: keys(1),
            required: false,
        });
        let unsigned = round_trip(None, optional.clone(), vec![QueueMessage::new("a")]).await;
        assert_eq!(refusal(&unsigned[0]), None);
        let foreign = round_trip(Some(keys(2)), optional, vec![QueueMessage::new("a")]).await;
        assert!(refusal(&foreign[0]).is_some());
    }

    #[tokio::test]
    async fn old_signed_messages_are_refused_when_an_age_is_set() {
        let stamped = |seconds_ago: u64| {
            let sent = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
                - seconds_ago;
            let mut message = QueueMessage::new(format!("sent {seconds_ago} s ago"));
            message.attributes.insert(
                attr::TIMESTAMP.to_owned(),
                crate::queue::AttributeValue::Number(sent.to_string()),
            );
            message
        };
        let signing = Signing {
            keys: keys(1),
            required: true,
        };
        let layer = VerifyLayer::new(signing.clone()).max_age(Some(Duration::from_secs(60)));
        let received = round_trip(Some(keys(1)), layer, vec![stamped(5), stamped(600)]).await;
        assert_eq!(received[0].message.body, "sent 5 s ago");
        assert_eq!(refusal(&received[0]), None);
        assert!(matches!(
            refusal(&received[1]),
            Some(SignatureRefused::Stale(StaleMessage::TooOld { .. }))
        ));
        // Without an age limit, the same old message passes.
        let received =
            round_trip(Some(keys(1)), VerifyLayer::new(signing), vec![stamped(600)]).await;
        assert_eq!(refusal(&received[0]), None);
    }

    #[tokio::test]
    async fn a_refusal_from_below_is_kept() {
        /// An inbox that marks everything refused.
        struct Refusing<I>(I);
        #[async_trait]
        impl<I: Inbox> Inbox for Refusing<I> {
            fn info(&self) -> &QueueInfo {
                self.0.info()
            }
            async fn receive(
                &self,
                max: usize,
                wait: Duration,
            ) -> Result<Vec<Delivery>, QueueError> {
                let mut deliveries = self.0.receive(max, wait).await?;
                for delivery in &mut deliveries {
                    delivery.refused = Some(Refused::new(QueueError::Closed));
                }
                Ok(deliveries)
            }
            async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
                self.0.ack(receipt).await
            }
            async fn extend(
                &self,
                receipt: &Receipt,
                visibility: Duration,
            ) -> Result<(), QueueError> {
                self.0.extend(receipt, visibility).await
            }
            async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
                self.0.release(receipt).await
            }
        }
        let broker = MemoryBroker::new();
        let queue = broker.create_queue("q", MemoryQueueOptions::default());
        let inbox = VerifyLayer::new(Signing {
            keys: keys(1),
            required: true,
        })
        .layer(Refusing(broker.inbox(&queue).expect("queue exists")));
        broker
            .outbox()
            .send(&queue, QueueMessage::new("x"))
            .await
            .expect("sent");
        let received = inbox.receive(1, Duration::ZERO).await.expect("received");
        let refused = received[0].refused.as_ref().expect("refused");
        assert!(refused.downcast_ref::<QueueError>().is_some(), "{refused}");
    }
}

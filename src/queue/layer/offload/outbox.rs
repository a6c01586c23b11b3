//! [`OffloadOutbox`]: puts bodies over the threshold in S3 and sends a
//! pointer instead (see [`offload`](super)).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::S3Offload;
use super::pointer::{PAYLOAD_SIZE_ATTRIBUTE, PayloadPointer};
use crate::queue::{AttributeValue, Outbox, QueueError, QueueMessage};

/// An outbox that offloads large bodies to S3.
#[derive(Debug, Clone)]
pub struct OffloadOutbox<O> {
    inner: O,
    settings: Arc<S3Offload>,
}

impl<O> OffloadOutbox<O> {
    /// `inner`, offloading as `settings` say.
    pub fn new(inner: O, settings: Arc<S3Offload>) -> Self {
        Self { inner, settings }
    }
}

/// Whether `error` says the broker surely did not take the message, so its
/// object can go at once. After any other failure (a timeout, say) the
/// message may have been sent: its object stays, for the lifecycle rule.
fn surely_not_sent(error: &QueueError) -> bool {
    matches!(
        error,
        QueueError::UnsupportedDestination(_)
            | QueueError::NoSuchQueue(_)
            | QueueError::NoSuchTopic(_)
            | QueueError::TooLarge { .. }
            | QueueError::TooManyAttributes { .. }
            | QueueError::EntryFailed {
                sender_fault: true,
                ..
            }
    )
}

#[async_trait]
impl<O: Outbox> Outbox for OffloadOutbox<O> {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }

    async fn send(&self, address: &str, mut message: QueueMessage) -> Result<(), QueueError> {
        let threshold = match self.settings.threshold {
            Some(threshold) => threshold,
            None => self.inner.max_message_size(address).await?,
        };
        if message.wire_size() <= threshold {
            return self.inner.send(address, message).await;
        }
        let size = message.body.len();
        if size > self.settings.max_payload {
            return Err(QueueError::TooLarge {
                size,
                limit: self.settings.max_payload,
            });
        }
        let pointer = PayloadPointer {
            bucket: self.settings.bucket.clone(),
            key: format!("{}{}", self.settings.prefix, uuid::Uuid::new_v4()),
        };
        let body = std::mem::take(&mut message.body);
        self.settings
            .client
            .put_object()
            .bucket(&pointer.bucket)
            .key(&pointer.key)
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map_err(|error| {
                QueueError::service(format!(
                    "offloading a {size}-byte body to {}: {}",
                    pointer.url(),
                    DisplayErrorContext(&error)
                ))
            })?;
        message.body = pointer.to_body();
        message.attributes.insert(
            PAYLOAD_SIZE_ATTRIBUTE.to_owned(),
            AttributeValue::Number(size.to_string()),
        );
        tracing::debug!(object = %pointer.url(), size, address, "offloaded a message body");
        let sent = self.inner.send(address, message).await;
        if let Err(error) = &sent
            && surely_not_sent(error)
        {
            let _ = self
                .settings
                .client
                .delete_object()
                .bucket(&pointer.bucket)
                .key(&pointer.key)
                .send()
                .await;
        }
        sent
    }

    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        let inner = self.inner.max_message_size(address).await?;
        Ok(inner.max(self.settings.max_payload))
    }
}

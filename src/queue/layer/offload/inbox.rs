//! [`OffloadInbox`]: fetches offloaded bodies on receive and deletes their
//! objects after ack (see [`offload`](super)).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use futures::future::join_all;

use super::pointer::{
    LEGACY_PAYLOAD_SIZE_ATTRIBUTE, PAYLOAD_SIZE_ATTRIBUTE, PayloadPointer, tag_receipt,
    untag_receipt,
};
use super::{PayloadRefused, S3Offload};
use crate::queue::{Delivery, Inbox, QueueError, QueueInfo, Receipt, Refused};

/// An inbox that replaces pointer bodies by the objects they point to.
#[derive(Debug, Clone)]
pub struct OffloadInbox<I> {
    inner: I,
    settings: Arc<S3Offload>,
}

/// What became of one delivery's pointer.
enum Fetched {
    /// The body, and the object to delete on ack.
    Body(String, PayloadPointer),
    /// Refused: marked for the consumer.
    Refused(PayloadRefused),
    /// S3 failed for a reason that may pass: left for redelivery.
    Later(String),
}

impl<I> OffloadInbox<I> {
    /// `inner`, following pointers as `settings` allow.
    pub fn new(inner: I, settings: Arc<S3Offload>) -> Self {
        Self { inner, settings }
    }

    /// Fetches the object `pointer` names, if it may be followed.
    async fn fetch(&self, pointer: PayloadPointer) -> Fetched {
        let url = pointer.url();
        if !self.settings.accepts(&pointer) {
            return Fetched::Refused(PayloadRefused::NotAccepted(url));
        }
        let output = match self
            .settings
            .client
            .get_object()
            .bucket(&pointer.bucket)
            .key(&pointer.key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) => {
                let missing = error.as_service_error().is_some_and(|e| e.is_no_such_key())
                    || error.code() == Some("NoSuchKey")
                    || error
                        .raw_response()
                        .is_some_and(|response| response.status().as_u16() == 404);
                return if missing {
                    Fetched::Refused(PayloadRefused::Missing(url))
                } else {
                    Fetched::Later(format!("GetObject {url}: {}", DisplayErrorContext(&error)))
                };
            }
        };
        let size = output.content_length().unwrap_or(0).max(0) as u64;
        if size > self.settings.max_payload as u64 {
            return Fetched::Refused(PayloadRefused::TooLarge {
                url,
                size,
                max: self.settings.max_payload,
            });
        }
        let bytes = match output.body.collect().await {
            Ok(bytes) => bytes.into_bytes(),
            Err(error) => return Fetched::Later(format!("GetObject {url}: reading: {error}")),
        };
        // Content-Length is S3's; this only guards a body longer than it said.
        if bytes.len() > self.settings.max_payload {
            return Fetched::Refused(PayloadRefused::TooLarge {
                url,
                size: bytes.len() as u64,
                max: self.settings.max_payload,
            });
        }
        match String::from_utf8(bytes.to_vec()) {
            Ok(body) => Fetched::Body(body, pointer),
            Err(_) => Fetched::Refused(PayloadRefused::NotUtf8(url)),
        }
    }

    /// `delivery` with its payload in place, marked refused, or `None` when
    /// it is left for redelivery.
    async fn resolve(&self, mut delivery: Delivery) -> Option<Delivery> {
        if delivery.refused.is_some() {
            return Some(delivery);
        }
        let pointer = match PayloadPointer::parse(&delivery.message.body) {
            None => return Some(delivery),
            Some(Ok(pointer)) => pointer,
            Some(Err(malformed)) => {
                delivery.refused = Some(Refused::new(PayloadRefused::from(malformed)));
                return Some(delivery);
            }
        };
        match self.fetch(pointer).await {
            Fetched::Body(body, pointer) => {
                delivery.message.body = body;
                for name in [PAYLOAD_SIZE_ATTRIBUTE, LEGACY_PAYLOAD_SIZE_ATTRIBUTE] {
                    delivery.message.attributes.remove(name);
                }
                if self.settings.delete_on_settle {
                    delivery.receipt = tag_receipt(&delivery.receipt, &pointer);
                }
                Some(delivery)
            }
            Fetched::Refused(refused) => {
                tracing::warn!(message_id = %delivery.message_id, reason = %refused, "refused an offloaded payload");
                delivery.refused = Some(Refused::new(refused));
                Some(delivery)
            }
            Fetched::Later(reason) => {
                // Not settled: its visibility lapses and it comes again.
                tracing::warn!(message_id = %delivery.message_id, %reason, "cannot fetch an offloaded payload; leaving the message for redelivery");
                None
            }
        }
    }
}

#[async_trait]
impl<I: Inbox> Inbox for OffloadInbox<I> {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deliveries = self.inner.receive(max, wait).await?;
        let resolved = join_all(deliveries.into_iter().map(|d| self.resolve(d))).await;
        Ok(resolved.into_iter().flatten().collect())
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let (inner, object) = untag_receipt(receipt);
        // The message first: a failed delete leaves an orphan for the
        // lifecycle rule, never a message without its payload.
        self.inner.ack(&inner).await?;
        if let Some(object) = object
            && let Err(error) = self
                .settings
                .client
                .delete_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .send()
                .await
        {
            tracing::warn!(object = %object.url(), error = %DisplayErrorContext(&error), "could not delete an offloaded payload; the bucket's lifecycle rule will");
        }
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.inner
            .extend(&untag_receipt(receipt).0, visibility)
            .await
    }

    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.release(&untag_receipt(receipt).0).await
    }
}

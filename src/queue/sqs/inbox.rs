//! Consuming one SQS queue.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};

use super::{entry_results, map_sdk_error, seconds};
use crate::queue::batch::{Batcher, BatcherConfig, FlushResult};
use crate::queue::{
    AttributeValue, Attributes, DEFAULT_MAX_MESSAGE_SIZE, Delivery, Inbox, MAX_RECEIVE_BATCH,
    MAX_WAIT, QueueError, QueueInfo, QueueMessage, Receipt,
};

/// The longest visibility timeout SQS allows (12 hours), in seconds.
const MAX_VISIBILITY_SECS: u64 = 43_200;

/// A consumer of one SQS queue.
///
/// Acks from concurrent tasks are coalesced into `DeleteMessageBatch` calls
/// by an adaptive [`Batcher`]; `release` and `extend` are single
/// `ChangeMessageVisibility` calls (they are rare next to acks).
pub struct SqsInbox {
    client: Client,
    info: QueueInfo,
    deletes: Batcher<String, ()>,
}

impl std::fmt::Debug for SqsInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsInbox")
            .field("info", &self.info)
            .finish()
    }
}

impl SqsInbox {
    /// Opens the queue at `queue_url`, reading its visibility timeout,
    /// maximum message size and FIFO flag (`GetQueueAttributes`); the
    /// [`QueueInfo::region`] is `client`'s.
    pub async fn open(client: Client, queue_url: &str) -> Result<Self, QueueError> {
        let output = client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .attribute_names(QueueAttributeName::FifoQueue)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, queue_url))?;
        let attributes = output.attributes.unwrap_or_default();
        let read = |name: QueueAttributeName| attributes.get(&name).map(String::as_str);
        let visibility_secs = read(QueueAttributeName::VisibilityTimeout)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| {
                tracing::warn!(queue = queue_url, "no VisibilityTimeout; assuming 30 s");
                30
            });
        let max_message_size = read(QueueAttributeName::MaximumMessageSize)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        let fifo = read(QueueAttributeName::FifoQueue) == Some("true");
        let info = QueueInfo {
            address: queue_url.to_owned(),
            visibility_timeout: Duration::from_secs(visibility_secs),
            max_message_size,
            fifo,
            region: client.config().region().map(ToString::to_string),
        };
        let deletes = {
            let client = client.clone();
            let url = queue_url.to_owned();
            Batcher::new(BatcherConfig::default(), move |receipts| {
                delete_batch(client.clone(), url.clone(), receipts)
            })
        };
        Ok(Self {
            client,
            info,
            deletes,
        })
    }

    async fn change_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.info.address)
            .receipt_handle(&receipt.0)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.info.address))?;
        Ok(())
    }
}

async fn delete_batch(client: Client, url: String, receipts: Vec<String>) -> FlushResult<()> {
    let count = receipts.len();
    let entries = receipts
        .into_iter()
        .enumerate()
        .map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .map_err(|e| QueueError::from_source("cannot build a batch entry", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = client
        .delete_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &url))?;
    let successful = output.successful.into_iter().map(|entry| entry.id);
    Ok(entry_results(count, successful, output.failed))
}

/// Converts a received message, or says why it cannot be settled.
fn delivery(message: Message) -> Option<Delivery> {
    let Some(receipt) = message.receipt_handle else {
        tracing::warn!(message_id = ?message.message_id, "received a message without a receipt handle; skipped");
        return None;
    };
    let system = message.attributes.unwrap_or_default();
    let receive_count = system
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or(1);
    let attributes = message
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| attribute(name, value))
        .collect::<Attributes>();
    Some(Delivery {
        message_id: message.message_id.unwrap_or_default(),
        receipt: Receipt(receipt),
        receive_count,
        message: QueueMessage {
            body: message.body.unwrap_or_default(),
            attributes,
            group_id: system
                .get(&MessageSystemAttributeName::MessageGroupId)
                .cloned(),
            deduplication_id: system
                .get(&MessageSystemAttributeName::MessageDeduplicationId)
                .cloned(),
        },
        refused: None,
        sent_at: system
            .get(&MessageSystemAttributeName::SentTimestamp)
            .and_then(|millis| millis.parse::<u64>().ok())
            .and_then(|millis| std::time::UNIX_EPOCH.checked_add(Duration::from_millis(millis))),
    })
}

/// Converts one message attribute; binary ones are skipped.
fn attribute(name: String, value: MessageAttributeValue) -> Option<(String, AttributeValue)> {
    let data_type = value.data_type.as_str();
    let Some(text) = value.string_value else {
        tracing::debug!(%name, data_type, "skipping a message attribute without a string value");
        return None;
    };
    if data_type == "Number" || data_type.starts_with("Number.") {
        Some((name, AttributeValue::Number(text)))
    } else if data_type == "String" || data_type.starts_with("String.") {
        Some((name, AttributeValue::String(text)))
    } else {
        tracing::debug!(%name, data_type, "skipping a message attribute of unknown type");
        None
    }
}

#[async_trait]
impl Inbox for SqsInbox {
    fn info(&self) -> &QueueInfo {
        &self.info
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let max = max.clamp(1, MAX_RECEIVE_BATCH);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.info.address)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(seconds(wait, MAX_WAIT.as_secs()))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::MessageDeduplicationId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.info.address))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(delivery)
            .collect())
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.deletes.submit(receipt.0.clone()).await
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.change_visibility(receipt, visibility).await
    }

    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.change_visibility(receipt, Duration::ZERO).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_messages_convert_without_panicking() {
        assert!(delivery(Message::builder().body("x").build()).is_none());

        let bare = delivery(Message::builder().receipt_handle("r").build()).unwrap();
        assert_eq!(bare.message.body, "");
        assert_eq!(bare.receive_count, 1);

        let binary = MessageAttributeValue::builder()
            .data_type("Binary")
            .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![1, 2]))
            .build()
            .unwrap();
        let number = MessageAttributeValue::builder()
            .data_type("Number.int")
            .string_value("42")
            .build()
            .unwrap();
        let full = Message::builder()
            .receipt_handle("r")
            .message_id("m")
            .body("b")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
            .message_attributes("blob", binary)
            .message_attributes("n", number)
            .build();
        let full = delivery(full).unwrap();
        assert_eq!(full.receive_count, 3);
        assert_eq!(
            full.sent_at,
            std::time::UNIX_EPOCH.checked_add(Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(bare.sent_at, None, "no send time: none made up");
        assert_eq!(full.message.attributes.len(), 1);
        assert_eq!(
            full.message.attributes.get("n"),
            Some(&AttributeValue::Number("42".to_owned()))
        );
    }
}

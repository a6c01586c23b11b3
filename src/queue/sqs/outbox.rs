//! Sending to SQS queues: the SQS side of a
//! [`BatchedOutbox`](crate::queue::batched::BatchedOutbox).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};

use super::{entry_results, is_refused, map_sdk_error};
use crate::queue::address::is_queue_url;
use crate::queue::batch::{BatcherConfig, FlushResult};
use crate::queue::batched::{BatchSend, BatchedOutbox, SizeLookup, typed};
use crate::queue::{DEFAULT_MAX_MESSAGE_SIZE, Outbox, QueueError, QueueMessage};

/// Sends to SQS queues named by URL.
///
/// Accepts only SQS queue URLs (`<scheme>://<host>[:port]/<12-digit
/// account>/<queue name>`, or LocalStack's
/// `/queue/<region>/<account>/<name>` path form), so that in a
/// [`RoutingOutbox`](crate::queue::RoutingOutbox) other `https://`
/// addresses go to the outbox they belong to.
///
/// Each destination gets its own adaptive
/// [`Batcher`](crate::queue::batch::Batcher) over `SendMessageBatch`, so
/// concurrent sends to one queue share calls, while a lone send goes out at
/// once. A batch never carries more bytes than the destination's
/// `MaximumMessageSize` (which SQS also applies to a batch's total), and a
/// larger message is refused before any call. Concurrent senders to a FIFO
/// queue have no order among them; one sender awaiting each send keeps its
/// order.
///
/// Cheap to clone: clones share the batchers and the size cache.
#[derive(Clone, Debug)]
pub struct SqsOutbox {
    inner: BatchedOutbox<Sqs>,
}

impl SqsOutbox {
    /// An outbox with the default [`BatcherConfig`].
    pub fn new(client: Client) -> Self {
        Self::with_config(client, BatcherConfig::default())
    }

    /// An outbox whose per-destination batchers use `config`
    /// (`max_weight` is set per destination from its maximum message size).
    pub fn with_config(client: Client, config: BatcherConfig) -> Self {
        Self {
            inner: BatchedOutbox::new(Sqs { client }, config),
        }
    }
}

#[async_trait]
impl Outbox for SqsOutbox {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        self.inner.send(address, message).await
    }

    /// Reads the queue's `MaximumMessageSize` once (concurrent first callers
    /// share one call) and caches it; failures are not cached. When the
    /// caller is not allowed `GetQueueAttributes` on the queue, this is
    /// [`DEFAULT_MAX_MESSAGE_SIZE`] (1 MiB, the SQS maximum), cached too.
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

/// SQS for a [`BatchedOutbox`]: `GetQueueAttributes` for the size,
/// `SendMessageBatch` for the batches.
struct Sqs {
    client: Client,
}

impl BatchSend for Sqs {
    const NAME: &'static str = "SqsOutbox";
    const SERVICE_LIMIT: usize = DEFAULT_MAX_MESSAGE_SIZE;

    fn accepts(&self, address: &str) -> bool {
        is_queue_url(address)
    }

    async fn max_size(&self, address: &str) -> Result<SizeLookup, QueueError> {
        let sent = self
            .client
            .get_queue_attributes()
            .queue_url(address)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await;
        let output = match sent {
            Ok(output) => output,
            // A role allowed only sqs:SendMessage on a reply queue: send all
            // the same, within the largest message SQS accepts at all.
            Err(error) if is_refused(&error) => {
                return Ok(SizeLookup::Refused(map_sdk_error(error, address)));
            }
            Err(error) => return Err(map_sdk_error(error, address)),
        };
        let size = output
            .attributes
            .unwrap_or_default()
            .get(&QueueAttributeName::MaximumMessageSize)
            .and_then(|size| size.parse::<usize>().ok());
        Ok(SizeLookup::Limit(size.unwrap_or_else(|| {
            tracing::warn!(
                queue = address,
                "no MaximumMessageSize; assuming the default"
            );
            DEFAULT_MAX_MESSAGE_SIZE
        })))
    }

    async fn send_batch(
        &self,
        url: &str,
        _limit: usize,
        messages: Vec<QueueMessage>,
    ) -> FlushResult<()> {
        let count = messages.len();
        let entries = messages
            .into_iter()
            .enumerate()
            .map(|(i, message)| entry(i, message))
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, url))?;
        let successful = output.successful.into_iter().map(|entry| entry.id);
        Ok(entry_results(count, successful, output.failed))
    }
}

fn entry(index: usize, message: QueueMessage) -> Result<SendMessageBatchRequestEntry, QueueError> {
    let build_error = |e: aws_sdk_sqs::error::BuildError| {
        QueueError::from_source("cannot build a batch entry", e)
    };
    let mut attributes = HashMap::with_capacity(message.attributes.len());
    for (name, value) in message.attributes {
        let (data_type, text) = typed(value);
        let value = MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(text)
            .build()
            .map_err(build_error)?;
        attributes.insert(name, value);
    }
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body)
        .set_message_attributes((!attributes.is_empty()).then_some(attributes))
        .set_message_group_id(message.group_id)
        .set_message_deduplication_id(message.deduplication_id)
        .build()
        .map_err(build_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::AttributeValue;

    /// An outbox whose client reaches nothing (port 9) and does not retry.
    fn unreachable() -> SqsOutbox {
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(RetryConfig::disabled())
            .build();
        SqsOutbox::new(Client::from_conf(config))
    }

    #[tokio::test]
    async fn only_queue_urls_are_accepted() {
        let outbox = unreachable();
        for queue in [
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
            "https://us-west-2.queue.amazonaws.com/123456789012/q",
            "https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/q",
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
            "https://vpce-0a1b2c3d-e4f5.sqs.eu-west-1.vpce.amazonaws.com/123456789012/q",
            "http://localhost:4566/000000000000/q",
            "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q",
            "http://localhost:4566/queue/us-east-1/000000000000/q",
        ] {
            assert!(outbox.accepts(queue), "{queue}");
        }
        for other in [
            "https://example.com/hooks/reply",
            "https://hooks.example.com/123/reply",
            "http://localhost:8080/webhook",
            "http://localhost:4566/000000000000/q?x=1",
            "arn:aws:sns:us-east-1:000000000000:t",
            "memory://q",
        ] {
            assert!(!outbox.accepts(other), "{other}");
            let sent = outbox.send(other, QueueMessage::new("x")).await;
            assert!(
                matches!(sent, Err(QueueError::UnsupportedDestination(_))),
                "{other}: {sent:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_call_keeps_the_sdk_error_as_its_source() {
        use aws_sdk_sqs::error::SdkError;
        use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
        use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
        use std::error::Error as _;

        let outbox = unreachable();
        let url = "http://127.0.0.1:9/000000000000/q";
        let failed = outbox.send(url, QueueMessage::new("x")).await.unwrap_err();
        let QueueError::Service { message, .. } = &failed else {
            panic!("{failed:?}");
        };
        assert!(message.contains("dispatch failure"), "{message}");
        let source = failed.source().expect("a source");
        assert!(
            source
                .downcast_ref::<SdkError<GetQueueAttributesError, HttpResponse>>()
                .is_some(),
            "{source:?}"
        );
        assert!(!failed.is_permanent());
    }

    #[test]
    fn entries_carry_attributes_and_fifo_ids() {
        let mut message = QueueMessage::new("body").with_string("s", "text");
        message
            .attributes
            .insert("n".to_owned(), AttributeValue::Number("1.5".to_owned()));
        message.group_id = Some("g".to_owned());
        let entry = entry(3, message).unwrap();
        assert_eq!(entry.id, "3");
        assert_eq!(entry.message_group_id.as_deref(), Some("g"));
        assert_eq!(entry.message_deduplication_id, None);
        let attributes = entry.message_attributes.unwrap();
        assert_eq!(attributes["n"].data_type, "Number");
        assert_eq!(attributes["s"].string_value.as_deref(), Some("text"));

        let plain = super::entry(0, QueueMessage::new("x")).unwrap();
        assert!(plain.message_attributes.is_none());
    }
}

//! Publishing to SNS topics: the SNS side of a
//! [`BatchedOutbox`](crate::queue::batched::BatchedOutbox).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::operation::publish_batch::PublishBatchOutput;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use super::{DEFAULT_MAX_MESSAGE_SIZE, entry_results, is_too_long, is_topic_arn, map_sdk_error};
use crate::queue::batch::{BatcherConfig, FlushResult};
use crate::queue::batched::{BatchSend, BatchedOutbox, SizeLookup, typed};
use crate::queue::sqs::is_refused;
use crate::queue::{MAX_ATTRIBUTES, Outbox, QueueError, QueueMessage};

/// The topic attribute read by [`SnsOutbox::max_message_size`].
const MAXIMUM_MESSAGE_SIZE: &str = "MaximumMessageSize";

/// Publishes to SNS topics named by ARN.
///
/// Each topic gets its own adaptive
/// [`Batcher`](crate::queue::batch::Batcher) over `PublishBatch`, so
/// concurrent sends to one topic share calls, while a lone send goes out at
/// once. A batch never carries more bytes than the topic's limit (which SNS
/// also applies to a batch's total). Should SNS still find a batch too long,
/// its entries are published one by one. Concurrent senders to a FIFO topic
/// have no order among them; one sender awaiting each send keeps its order.
///
/// A message with more than [`MAX_ATTRIBUTES`] attributes is refused with
/// [`QueueError::TooManyAttributes`]: SNS accepts it but silently drops it on
/// its way to a queue with raw message delivery.
///
/// Cheap to clone: clones share the batchers and the size cache.
#[derive(Clone, Debug)]
pub struct SnsOutbox {
    inner: BatchedOutbox<Sns>,
}

impl SnsOutbox {
    /// An outbox with the default [`BatcherConfig`].
    pub fn new(client: Client) -> Self {
        Self::with_config(client, BatcherConfig::default())
    }

    /// An outbox whose per-topic batchers use `config` (`max_weight` is set
    /// per topic from its maximum message size).
    pub fn with_config(client: Client, config: BatcherConfig) -> Self {
        Self {
            inner: BatchedOutbox::new(Sns { client }, config),
        }
    }
}

#[async_trait]
impl Outbox for SnsOutbox {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        self.inner.send(address, message).await
    }

    /// Reads the topic's `MaximumMessageSize` once (concurrent first callers
    /// share one `GetTopicAttributes` call) and caches it; failures are not
    /// cached. AWS reports no such attribute, so this is in practice
    /// [`DEFAULT_MAX_MESSAGE_SIZE`], once the topic is known to exist: a
    /// missing topic is [`QueueError::NoSuchTopic`]. When the caller is not
    /// allowed `GetTopicAttributes` on the topic, it is that limit too
    /// (cached), and a missing topic shows on the publish instead.
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

/// SNS for a [`BatchedOutbox`]: `GetTopicAttributes` for the size,
/// `PublishBatch` for the batches.
struct Sns {
    client: Client,
}

impl BatchSend for Sns {
    const NAME: &'static str = "SnsOutbox";
    const SERVICE_LIMIT: usize = DEFAULT_MAX_MESSAGE_SIZE;

    fn accepts(&self, address: &str) -> bool {
        is_topic_arn(address)
    }

    async fn max_size(&self, address: &str) -> Result<SizeLookup, QueueError> {
        let sent = self
            .client
            .get_topic_attributes()
            .topic_arn(address)
            .send()
            .await;
        let output = match sent {
            Ok(output) => output,
            // A role allowed only sns:Publish on a reply topic: publish all
            // the same, within the largest message SNS accepts at all.
            Err(error) if is_refused(&error) => {
                return Ok(SizeLookup::Refused(map_sdk_error(error, address)));
            }
            Err(error) => return Err(map_sdk_error(error, address)),
        };
        let size = output
            .attributes
            .unwrap_or_default()
            .get(MAXIMUM_MESSAGE_SIZE)
            .and_then(|size| size.parse::<usize>().ok());
        Ok(SizeLookup::Limit(size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE)))
    }

    fn precheck(&self, _address: &str, message: &QueueMessage) -> Result<(), QueueError> {
        let count = message.attributes.len();
        if count > MAX_ATTRIBUTES {
            return Err(QueueError::TooManyAttributes {
                count,
                limit: MAX_ATTRIBUTES,
            });
        }
        Ok(())
    }

    async fn send_batch(
        &self,
        arn: &str,
        limit: usize,
        messages: Vec<QueueMessage>,
    ) -> FlushResult<()> {
        publish_batch(&self.client, arn, limit, messages).await
    }
}

/// Publishes one batch; `limit` is the topic's, for [`QueueError::TooLarge`].
async fn publish_batch(
    client: &Client,
    arn: &str,
    limit: usize,
    messages: Vec<QueueMessage>,
) -> FlushResult<()> {
    let sizes: Vec<usize> = messages.iter().map(QueueMessage::wire_size).collect();
    let entries = messages
        .into_iter()
        .enumerate()
        .map(|(i, message)| entry(i, message))
        .collect::<Result<Vec<_>, _>>()?;
    // Kept to publish the entries one by one should SNS find the batch too
    // long (it counts sizes its own way).
    let singles = (entries.len() > 1).then(|| entries.clone());
    let sent = client
        .publish_batch()
        .topic_arn(arn)
        .set_publish_batch_request_entries(Some(entries))
        .send()
        .await;
    match sent {
        Ok(output) => Ok(results(&sizes, limit, output)),
        Err(error)
            if is_too_long(
                error.code().unwrap_or_default(),
                error.message().unwrap_or_default(),
            ) =>
        {
            let Some(singles) = singles else {
                let size = sizes.first().copied().unwrap_or_default();
                return Err(QueueError::TooLarge { size, limit });
            };
            tracing::warn!(
                topic = %arn,
                entries = singles.len(),
                "SNS found a batch too long; publishing its entries one by one"
            );
            let calls = singles
                .into_iter()
                .zip(&sizes)
                .map(|(entry, &size)| publish_one(client, arn, limit, entry, size));
            Ok(futures::future::join_all(calls).await)
        }
        Err(error) => Err(map_sdk_error(error, arn)),
    }
}

/// Publishes one entry alone (as a one-entry `PublishBatch`).
async fn publish_one(
    client: &Client,
    arn: &str,
    limit: usize,
    mut entry: PublishBatchRequestEntry,
    size: usize,
) -> Result<(), QueueError> {
    entry.id = "0".to_owned();
    let sent = client
        .publish_batch()
        .topic_arn(arn)
        .publish_batch_request_entries(entry)
        .send()
        .await;
    match sent {
        Ok(output) => results(&[size], limit, output)
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(QueueError::service("no result for the entry"))),
        Err(error)
            if is_too_long(
                error.code().unwrap_or_default(),
                error.message().unwrap_or_default(),
            ) =>
        {
            Err(QueueError::TooLarge { size, limit })
        }
        Err(error) => Err(map_sdk_error(error, arn)),
    }
}

fn results(
    sizes: &[usize],
    limit: usize,
    output: PublishBatchOutput,
) -> Vec<Result<(), QueueError>> {
    let successful = output
        .successful
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.id);
    entry_results(sizes, limit, successful, output.failed.unwrap_or_default())
}

fn entry(index: usize, message: QueueMessage) -> Result<PublishBatchRequestEntry, QueueError> {
    let build_error = |e: aws_sdk_sns::error::BuildError| {
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
    PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .message(message.body)
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

    #[test]
    fn entries_carry_attributes_and_fifo_ids() {
        let mut message = QueueMessage::new("body").with_string("s", "text");
        message
            .attributes
            .insert("n".to_owned(), AttributeValue::Number("1.5".to_owned()));
        message.group_id = Some("g".to_owned());
        message.deduplication_id = Some("d".to_owned());
        let entry = entry(3, message).unwrap();
        assert_eq!(entry.id, "3");
        assert_eq!(entry.message, "body");
        assert_eq!(entry.message_group_id.as_deref(), Some("g"));
        assert_eq!(entry.message_deduplication_id.as_deref(), Some("d"));
        let attributes = entry.message_attributes.unwrap();
        assert_eq!(attributes["n"].data_type, "Number");
        assert_eq!(attributes["n"].string_value.as_deref(), Some("1.5"));
        assert_eq!(attributes["s"].data_type, "String");
        assert_eq!(attributes["s"].string_value.as_deref(), Some("text"));

        let plain = super::entry(0, QueueMessage::new("x")).unwrap();
        assert!(plain.message_attributes.is_none());
        assert!(plain.message_group_id.is_none());
    }

    #[tokio::test]
    async fn refusals_come_before_any_call() {
        // No endpoint answers here: a call would fail as Service, not as these.
        let config = aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let outbox = SnsOutbox::new(Client::from_conf(config));
        let topic = "arn:aws:sns:us-east-1:000000000000:t";
        assert!(outbox.accepts(topic));
        assert!(!outbox.accepts("https://sqs.us-east-1.amazonaws.com/0/q"));
        let queue = outbox
            .send(
                "https://sqs.us-east-1.amazonaws.com/0/q",
                QueueMessage::new("x"),
            )
            .await;
        assert!(matches!(queue, Err(QueueError::UnsupportedDestination(_))));
        let mut crowded = QueueMessage::new("x");
        for i in 0..=MAX_ATTRIBUTES {
            crowded = crowded.with_string(&format!("a{i}"), "v");
        }
        let refused = outbox.send(topic, crowded).await;
        assert!(
            matches!(
                refused,
                Err(QueueError::TooManyAttributes {
                    count: 11,
                    limit: MAX_ATTRIBUTES
                })
            ),
            "{refused:?}"
        );
    }
}

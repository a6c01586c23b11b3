//! Amazon SNS topics, through `aws-sdk-sns` (feature `sns`).
//!
//! A topic fans each message out to the SQS queues subscribed to it, so this
//! module only sends: consuming is always an [`SqsInbox`](super::sqs::SqsInbox)
//! on a subscribed queue.
//!
//! * [`SnsOutbox`] publishes to any topic ARN through a per-topic,
//!   adaptively batched `PublishBatch` (see [`batch`](super::batch)), and
//!   refuses before making any call a message larger than the topic accepts
//!   ([`DEFAULT_MAX_MESSAGE_SIZE`], 256 KiB) or with more than
//!   [`MAX_ATTRIBUTES`](super::MAX_ATTRIBUTES) attributes (which SNS would
//!   silently drop on its way to a raw-delivery queue).
//! * [`create_topic`], [`delete_topic`], [`subscribe_queue`] and
//!   [`unsubscribe`] provision topics and queue subscriptions idempotently;
//!   [`subscribe_queue`] also lets the topic write to the queue
//!   ([`allow_topic`](super::sqs::allow_topic)). [`filter_on`] builds the
//!   usual filter policy: deliver only messages whose attribute has one of
//!   some values.
//! * [`client_with_counter`] attaches the same
//!   [`ApiCallCounter`] as SQS clients use.
//!
//! Build one [`Client`] per process from the same
//! [`sdk_config_from_env`](super::sqs::sdk_config_from_env) as the SQS client
//! (`AWS_ENDPOINT_URL_SNS` is honoured) and clone it: clones share
//! connections.

use aws_config::SdkConfig;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

pub use aws_sdk_sns::Client;

use super::sqs::{ApiCallCounter, service_error};
use super::{QueueError, batched};

mod admin;
mod outbox;

pub use super::is_topic_arn;
pub use admin::{
    SnsTopicOptions, SubscriptionOptions, create_topic, delete_topic, filter_on, subscribe_queue,
    unsubscribe,
};
pub use outbox::SnsOutbox;

/// The largest message SNS publishes (256 KiB), body and attributes
/// together; also the limit on a whole `PublishBatch`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 262_144;

/// An SNS client for `sdk`. Make one per process and clone it.
pub fn client(sdk: &SdkConfig) -> Client {
    Client::new(sdk)
}

/// An SNS client for `sdk` whose every call attempt `counter` counts.
pub fn client_with_counter(sdk: &SdkConfig, counter: &ApiCallCounter) -> Client {
    let config = aws_sdk_sns::config::Builder::from(sdk)
        .interceptor(counter.clone())
        .build();
    Client::from_conf(config)
}

/// Whether an error code means the topic (or subscription) does not exist.
fn is_missing(code: &str) -> bool {
    code == "NotFound" || code == "NotFoundException"
}

/// Whether an error code (and message) means a message or batch is larger
/// than SNS accepts: `BatchRequestTooLong` from `PublishBatch`,
/// `InvalidParameter` "Message too long" from `Publish`.
fn is_too_long(code: &str, message: &str) -> bool {
    code == "BatchRequestTooLong"
        || (code.starts_with("InvalidParameter")
            && message.to_ascii_lowercase().contains("too long"))
}

/// Whether an error code (and message) means a topic or subscription
/// already exists with other attributes.
fn is_conflict(code: &str, message: &str) -> bool {
    code.starts_with("InvalidParameter") && message.contains("already exists")
}

/// Maps an SDK error from a call on `topic` to a [`QueueError`]. An
/// oversize message becomes a sender-fault [`QueueError::EntryFailed`]: the
/// callers that know the message's size make it [`QueueError::TooLarge`].
fn map_sdk_error<E>(error: SdkError<E, HttpResponse>, topic: &str) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().unwrap_or_default();
    let message = error.message().unwrap_or_default();
    if is_missing(code) {
        QueueError::NoSuchTopic(topic.to_owned())
    } else if is_too_long(code, message) {
        QueueError::EntryFailed {
            code: code.to_owned(),
            message: message.to_owned(),
            sender_fault: true,
        }
    } else {
        service_error(error)
    }
}

/// Maps one failed entry of a `PublishBatch` of a message of `size` bytes
/// to a [`QueueError`].
fn map_entry_error(
    entry: aws_sdk_sns::types::BatchResultErrorEntry,
    size: usize,
    limit: usize,
) -> QueueError {
    let message = entry.message.unwrap_or_default();
    if is_too_long(&entry.code, &message) {
        QueueError::TooLarge { size, limit }
    } else {
        QueueError::EntryFailed {
            code: entry.code,
            message,
            sender_fault: entry.sender_fault,
        }
    }
}

/// Collects a `PublishBatch` response into one result per entry, entries
/// being identified by their index as text; `sizes` are the entries'
/// [`wire_size`](super::QueueMessage::wire_size)s and `limit` the topic's.
fn entry_results(
    sizes: &[usize],
    limit: usize,
    successful: impl IntoIterator<Item = String>,
    failed: Vec<aws_sdk_sns::types::BatchResultErrorEntry>,
) -> Vec<Result<(), QueueError>> {
    let failed = failed.into_iter().map(|entry| {
        (entry.id.clone(), |i: usize| {
            map_entry_error(entry, sizes[i], limit)
        })
    });
    batched::entry_results(sizes.len(), successful, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::types::BatchResultErrorEntry;

    fn failure(id: &str, code: &str, message: &str) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .message(message)
            .sender_fault(true)
            .build()
            .unwrap()
    }

    #[test]
    fn topic_arns_are_recognised() {
        assert!(is_topic_arn("arn:aws:sns:us-east-1:000000000000:replies"));
        assert!(is_topic_arn(
            "arn:aws-cn:sns:cn-north-1:123456789012:t.fifo"
        ));
        assert!(!is_topic_arn("arn:aws:sqs:us-east-1:000000000000:replies"));
        assert!(!is_topic_arn(
            "arn:aws:sns:us-east-1:000000000000:replies:6329d13b-1476-4698-8cd4-491dea2b7e66"
        ));
        assert!(!is_topic_arn("arn:aws:sns:us-east-1:000000000000:"));
        assert!(!is_topic_arn("https://sqs.us-east-1.amazonaws.com/0/q"));
        assert!(!is_topic_arn("memory://q"));
    }

    #[test]
    fn batch_responses_map_to_their_entries() {
        let results = entry_results(
            &[10, 20, 30, 40],
            100,
            ["2".to_owned(), "0".to_owned(), "junk".to_owned()],
            vec![
                failure(
                    "1",
                    "InvalidParameter",
                    "Invalid parameter: Message too long",
                ),
                failure("9", "X", ""),
            ],
        );
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(
            results[1],
            Err(QueueError::TooLarge {
                size: 20,
                limit: 100
            })
        ));
        assert!(matches!(results[3], Err(QueueError::Service { .. })));
        let other = entry_results(&[1], 100, [], vec![failure("0", "KMSDisabled", "off")]);
        assert!(matches!(
            &other[0],
            Err(QueueError::EntryFailed { code, sender_fault: true, .. }) if code == "KMSDisabled"
        ));
    }

    #[test]
    fn error_codes_are_recognised() {
        assert!(is_missing("NotFound"));
        assert!(!is_missing("AuthorizationError"));
        assert!(is_too_long("BatchRequestTooLong", ""));
        assert!(is_too_long(
            "InvalidParameter",
            "Invalid parameter: Message too long"
        ));
        assert!(!is_too_long(
            "InvalidParameter",
            "Invalid parameter: TopicArn"
        ));
        assert!(is_conflict(
            "InvalidParameter",
            "Invalid parameter: Attributes Reason: Subscription already exists with different attributes"
        ));
        assert!(!is_conflict(
            "InvalidParameter",
            "Invalid parameter: Endpoint"
        ));
    }
}

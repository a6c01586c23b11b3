//! Amazon SQS queues, through `aws-sdk-sqs` (feature `sqs`).
//!
//! * [`SqsInbox`] consumes one queue: long-polled `ReceiveMessage`, acks
//!   through adaptively batched `DeleteMessageBatch`, `release` and `extend`
//!   through `ChangeMessageVisibility`.
//! * [`SqsOutbox`] sends to SQS queue URLs (and no other address) through
//!   a per-destination, adaptively batched `SendMessageBatch` (see
//!   [`batch`](super::batch)), and refuses a message larger than the
//!   queue's `MaximumMessageSize` before making any call.
//! * [`create_queue`], [`create_queue_with_dead_letter`], [`queue_arn`],
//!   [`queue_url`] and [`delete_queue`] provision queues idempotently;
//!   [`allow_topic`] lets an SNS topic send to a queue.
//! * [`ApiCallCounter`] counts API call attempts per operation; attach it
//!   with [`client_with_counter`].
//!
//! Build one [`Client`] per process (from [`sdk_config_from_env`]) and clone
//! it: clones share connections. The loaded configuration sets an attempt
//! timeout above the longest long poll and a connect timeout, so that no
//! call can hang forever on a dead connection.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig, meta::region::RegionProviderChain};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

pub use aws_sdk_sqs::Client;

use super::{QueueError, batched};

mod admin;
mod counter;
mod inbox;
mod outbox;

pub use admin::{
    SqsQueueOptions, SqsRedrive, allow_topic, create_queue, create_queue_with_dead_letter,
    delete_queue, queue_arn, queue_url,
};
pub use counter::ApiCallCounter;
pub use inbox::SqsInbox;
pub use outbox::SqsOutbox;

/// The region used when the environment and profile name none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long one call attempt may take: above the 20 s long poll
/// ([`MAX_WAIT`](super::MAX_WAIT)) with room for a slow response.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the AWS configuration from the default chain (environment,
/// profile, container or instance credentials; `AWS_ENDPOINT_URL` and
/// `AWS_ENDPOINT_URL_SQS` are honoured), with the region defaulting to
/// [`DEFAULT_REGION`], an [`ATTEMPT_TIMEOUT`] and a [`CONNECT_TIMEOUT`].
pub async fn sdk_config_from_env() -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(Region::new(DEFAULT_REGION));
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(timeouts)
        .load()
        .await
}

/// An SQS client for `sdk`. Make one per process and clone it.
pub fn client(sdk: &SdkConfig) -> Client {
    Client::new(sdk)
}

/// An SQS client for `sdk` whose every call attempt `counter` counts.
pub fn client_with_counter(sdk: &SdkConfig, counter: &ApiCallCounter) -> Client {
    let config = aws_sdk_sqs::config::Builder::from(sdk)
        .interceptor(counter.clone())
        .build();
    Client::from_conf(config)
}

/// Whether an error code means the queue does not exist.
fn is_missing_queue(code: &str) -> bool {
    code == "QueueDoesNotExist" || code.ends_with("NonExistentQueue")
}

/// Whether an error code (and message) means a receipt no longer settles
/// anything.
fn is_bad_receipt(code: &str, message: &str) -> bool {
    code == "ReceiptHandleIsInvalid"
        || code.ends_with("MessageNotInflight")
        || (code == "InvalidParameterValue" && message.contains("ReceiptHandle"))
}

/// Whether an error code means the caller is not allowed the call (IAM):
/// `AccessDenied` from SQS (`AccessDeniedException` in its JSON protocol's
/// body), `AuthorizationError` from SNS.
fn is_access_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied" | "AccessDeniedException" | "AuthorizationError"
    )
}

/// Whether `error` means the caller's role may not make the call, as when a
/// role allowed only to send asks for a destination's attributes: one of the
/// [`is_access_denied`] codes, or a 403 that names no code.
pub(crate) fn is_refused<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match error.code() {
        Some(code) => is_access_denied(code),
        None => error
            .raw_response()
            .is_some_and(|response| response.status().as_u16() == 403),
    }
}

/// Maps an SDK error from a call on `queue` to a [`QueueError`].
pub(crate) fn map_sdk_error<E>(error: SdkError<E, HttpResponse>, queue: &str) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().unwrap_or_default();
    let message = error.message().unwrap_or_default();
    if is_missing_queue(code) {
        QueueError::NoSuchQueue(queue.to_owned())
    } else if is_bad_receipt(code, message) {
        QueueError::InvalidReceipt
    } else {
        service_error(error)
    }
}

/// A [`QueueError::Service`] that keeps `error` (an SDK error) as its
/// source; its message is the error with its whole chain, as the SDK's
/// [`DisplayErrorContext`] writes it.
pub(crate) fn service_error<E>(error: E) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    QueueError::Service {
        message: DisplayErrorContext(&error).to_string(),
        source: Some(Arc::new(error)),
    }
}

/// Maps one failed entry of a batch call to a [`QueueError`].
pub(crate) fn map_entry_error(entry: aws_sdk_sqs::types::BatchResultErrorEntry) -> QueueError {
    let message = entry.message.unwrap_or_default();
    if is_bad_receipt(&entry.code, &message) {
        QueueError::InvalidReceipt
    } else {
        QueueError::EntryFailed {
            code: entry.code,
            message,
            sender_fault: entry.sender_fault,
        }
    }
}

/// Collects a batch response into one result per entry `0..count`; entries
/// are identified by their index as text.
pub(crate) fn entry_results(
    count: usize,
    successful: impl IntoIterator<Item = String>,
    failed: Vec<aws_sdk_sqs::types::BatchResultErrorEntry>,
) -> Vec<Result<(), QueueError>> {
    let failed = failed
        .into_iter()
        .map(|entry| (entry.id.clone(), |_| map_entry_error(entry)));
    batched::entry_results(count, successful, failed)
}

/// Whole seconds for an SQS duration parameter: rounded up, at most `max`.
pub(crate) fn seconds(duration: Duration, max: u64) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.min(max)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::BatchResultErrorEntry;

    fn failure(id: &str, code: &str) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .sender_fault(true)
            .build()
            .unwrap()
    }

    #[test]
    fn batch_responses_map_to_their_entries() {
        let results = entry_results(
            4,
            ["2".to_owned(), "0".to_owned(), "junk".to_owned()],
            vec![failure("1", "ReceiptHandleIsInvalid"), failure("9", "X")],
        );
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(results[1], Err(QueueError::InvalidReceipt)));
        assert!(matches!(results[3], Err(QueueError::Service { .. })));
        let other = entry_results(1, [], vec![failure("0", "InvalidAttributeName")]);
        assert!(matches!(
            &other[0],
            Err(QueueError::EntryFailed { code, sender_fault: true, .. }) if code == "InvalidAttributeName"
        ));
    }

    #[test]
    fn error_codes_are_recognised() {
        assert!(is_missing_queue("AWS.SimpleQueueService.NonExistentQueue"));
        assert!(is_missing_queue("QueueDoesNotExist"));
        assert!(!is_missing_queue("AccessDenied"));
        assert!(is_access_denied("AccessDenied"));
        assert!(is_access_denied("AccessDeniedException"));
        assert!(is_access_denied("AuthorizationError"));
        assert!(!is_access_denied("QueueDoesNotExist"));
        assert!(!is_access_denied("InvalidClientTokenId"));
        assert!(is_bad_receipt(
            "AWS.SimpleQueueService.MessageNotInflight",
            ""
        ));
        assert!(is_bad_receipt(
            "InvalidParameterValue",
            "Value x for parameter ReceiptHandle is invalid."
        ));
        assert!(!is_bad_receipt(
            "InvalidParameterValue",
            "MaxNumberOfMessages"
        ));
    }

    #[test]
    fn seconds_round_up_and_clamp() {
        assert_eq!(seconds(Duration::ZERO, 20), 0);
        assert_eq!(seconds(Duration::from_millis(1), 20), 1);
        assert_eq!(seconds(Duration::from_secs(5), 20), 5);
        assert_eq!(seconds(Duration::from_secs(60), 20), 20);
    }
}

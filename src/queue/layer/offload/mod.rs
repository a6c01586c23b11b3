//! Payloads beyond the queue's limit: S3 claim checks (feature `offload`).
//!
//! SQS takes messages up to 1 MiB (256 KiB on many queues), SNS up to
//! 256 KiB; tool results and arguments are often larger. [`OffloadLayer`]
//! wraps both ends:
//!
//! * **outbox** ([`OffloadOutbox`]): a message larger than the
//!   destination's limit ([`Outbox::max_message_size`], body and attributes
//!   counted as SQS counts them; or [`S3Offload::threshold`]) has its body
//!   put in S3 under `prefix + uuid v4` and is sent with a pointer instead,
//!   in the format of AWS's extended client libraries (see [`mod@pointer`]), its
//!   other attributes (a signature included) unchanged. Its
//!   `max_message_size` is [`S3Offload::max_payload`], so a builder's
//!   size checks let large messages through to it.
//! * **inbox** ([`OffloadInbox`]): a delivery whose body is a pointer has
//!   the object fetched in its place, and the object is deleted once the
//!   delivery is acked ([`S3Offload::delete_on_settle`]).
//!
//! The builders' `offload(..)` put both layers below signing, so that a
//! signature covers the real body and is checked after it is fetched (see
//! [`layer`](super)).
//!
//! # Why not `payload-offloading-for-aws`
//!
//! That crate does the same as AWS SDK interceptors, which are synchronous:
//! it uploads and downloads with `futures::executor::block_on` inside them
//! (blocking a runtime worker for the whole transfer), follows any bucket a
//! received pointer names, and never deletes an object. We follow only its
//! (Java's) wire format.
//!
//! # What a sender can do
//!
//! Everything in a message can be written by whoever can send to the queue:
//!
//! * **A pointer to another object.** Only pointers naming the configured
//!   bucket, under one of the accepted key prefixes
//!   ([`S3Offload::accept_prefix`]), are followed; any other is refused
//!   ([`PayloadRefused::NotAccepted`]) without a request to S3, so a sender
//!   cannot make us read, or on ack delete, an object elsewhere that our
//!   credentials reach.
//! * **A pointer to a huge object.** The object's size is read from S3
//!   (`Content-Length`), never from the forgeable `ExtendedPayloadSize`
//!   attribute, and an object over [`S3Offload::max_payload`] is refused
//!   before its body is read.
//! * **A pointer to another message's object** in our bucket: keys are
//!   random (uuid v4), so naming one needs having read the message that
//!   carries it, and whoever reads the queue can already delete that
//!   message. Fetching it would run that body again as the forger's message
//!   (signatures, when required, still bind it to its attributes); acking
//!   it deletes the object, and the real message then finds it gone.
//! * **A body that is not UTF-8**, or a malformed pointer: refused.
//!
//! A refused delivery is not settled here: it is marked
//! ([`Delivery::refused`](crate::queue::Delivery::refused)) for the
//! consumer, as the signature check does. A server answers a request whose
//! payload is gone with an error naming `s3://bucket/key`; a client fails
//! the call whose reply payload is gone with that error (see
//! `docs/offload.md` for when these answers are correlated).
//!
//! # Many senders, many replicas, duplicates
//!
//! Every sender writes fresh random keys, so two never share one. An object
//! is deleted after its message is acked (never before: a failed delete
//! leaves an orphan for the bucket's lifecycle rule, never a message
//! without its payload). A message delivered twice finds its object gone
//! the second time if the first delivery was already acked: the consumer
//! gets the clear "payload is gone" refusal. Fan-out (one SNS message read
//! from several queues) must turn [`S3Offload::delete_on_settle`] off and
//! leave deletion to the lifecycle rule.

mod inbox;
mod outbox;
pub mod pointer;

use std::sync::Arc;

use tower_layer::Layer;

pub use inbox::OffloadInbox;
pub use outbox::OffloadOutbox;
pub use pointer::PayloadPointer;

use crate::queue::{Inbox, Outbox};

/// The largest payload fetched or offloaded by default: 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Where and when bodies go to S3, and which pointers are followed.
#[derive(Debug, Clone)]
pub struct S3Offload {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    accepted_prefixes: Vec<String>,
    threshold: Option<usize>,
    max_payload: usize,
    delete_on_settle: bool,
}

impl S3Offload {
    /// Offloads to `bucket` through `client`, with no key prefix: the
    /// destination's limit as threshold, payloads up to
    /// [`DEFAULT_MAX_PAYLOAD`], objects deleted on settle.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: String::new(),
            accepted_prefixes: Vec::new(),
            threshold: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            delete_on_settle: true,
        }
    }

    /// [`new`](Self::new) with a client configured from the environment
    /// (aws-config: credentials, region, `AWS_ENDPOINT_URL`); with an
    /// endpoint override (LocalStack, MinIO), path-style addressing.
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut builder = aws_sdk_s3::config::Builder::from(&config);
        if config.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        Self::new(aws_sdk_s3::Client::from_conf(builder.build()), bucket)
    }

    /// Writes objects under `prefix` (e.g. `"mcp-payloads/"`), and accepts
    /// received pointers under it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Also accepts received pointers to keys under `prefix` of the bucket
    /// (`""`: any key), e.g. those of a Python or Java extended client,
    /// which writes keys with no prefix.
    pub fn accept_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.accepted_prefixes.push(prefix.into());
        self
    }

    /// Offloads every message whose size (body and attributes, as SQS counts
    /// them) is over `bytes`, instead of only those over the destination's
    /// limit.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = Some(bytes);
        self
    }

    /// The largest body offloaded or fetched (default
    /// [`DEFAULT_MAX_PAYLOAD`]).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Whether acking a delivery deletes its object (default `true`). Turn
    /// it off when one message is read from several queues (SNS fan-out):
    /// the first ack would take the payload from the others. The bucket's
    /// lifecycle rule then removes objects.
    pub fn delete_on_settle(mut self, delete: bool) -> Self {
        self.delete_on_settle = delete;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether a received pointer may be followed: it names our bucket and
    /// a key under our prefix or an accepted one.
    pub fn accepts(&self, pointer: &PayloadPointer) -> bool {
        pointer.bucket == self.bucket
            && std::iter::once(&self.prefix)
                .chain(&self.accepted_prefixes)
                .any(|prefix| pointer.key.starts_with(prefix.as_str()))
    }
}

/// Why a delivery's offloaded payload was refused. The texts name the
/// object, for the caller's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadRefused {
    /// The body claims to be a pointer but is not a well-formed one.
    #[error(transparent)]
    Malformed(#[from] pointer::MalformedPointer),
    /// The pointer names a bucket or key this layer does not follow.
    #[error("the message's payload pointer {0} names a bucket or key prefix that is not accepted")]
    NotAccepted(String),
    /// The object does not exist.
    #[error(
        "the message's payload {0} is gone: deleted, expired by a lifecycle rule, or never written"
    )]
    Missing(String),
    /// The object is larger than [`S3Offload::max_payload`].
    #[error("the message's payload {url} is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The object.
        url: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The object is not UTF-8 text.
    #[error("the message's payload {0} is not UTF-8 text")]
    NotUtf8(String),
}

/// A [`Layer`] that wraps an inbox in [`OffloadInbox`] and an outbox in
/// [`OffloadOutbox`], with one [`S3Offload`].
#[derive(Debug, Clone)]
pub struct OffloadLayer {
    settings: Arc<S3Offload>,
}

impl OffloadLayer {
    /// The layer for `settings`.
    pub fn new(settings: S3Offload) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl Layer<Arc<dyn Inbox>> for OffloadLayer {
    type Service = OffloadInbox<Arc<dyn Inbox>>;
    fn layer(&self, inner: Arc<dyn Inbox>) -> Self::Service {
        OffloadInbox::new(inner, self.settings.clone())
    }
}

impl Layer<Arc<dyn Outbox>> for OffloadLayer {
    type Service = OffloadOutbox<Arc<dyn Outbox>>;
    fn layer(&self, inner: Arc<dyn Outbox>) -> Self::Service {
        OffloadOutbox::new(inner, self.settings.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Offload {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        S3Offload::new(aws_sdk_s3::Client::from_conf(config), "ours")
    }

    fn pointer(bucket: &str, key: &str) -> PayloadPointer {
        PayloadPointer {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }

    #[test]
    fn only_our_bucket_and_prefixes_are_followed() {
        let any = settings();
        assert!(any.accepts(&pointer("ours", "anything")));
        assert!(!any.accepts(&pointer("theirs", "anything")));
        assert!(!any.accepts(&pointer("ours-too", "anything")));

        let prefixed = settings().prefix("mcp/");
        assert!(prefixed.accepts(&pointer("ours", "mcp/1")));
        assert!(!prefixed.accepts(&pointer("ours", "other/1")));
        assert!(!prefixed.accepts(&pointer("ours", "1")));
        let python = prefixed.accept_prefix("");
        assert!(python.accepts(&pointer("ours", "1")));
        assert!(!python.accepts(&pointer("theirs", "mcp/1")));
    }

    #[test]
    fn refusals_name_the_object() {
        let url = pointer("b", "k").url();
        assert_eq!(
            PayloadRefused::Missing(url).to_string(),
            "the message's payload s3://b/k is gone: deleted, expired by a lifecycle rule, or never written"
        );
    }
}

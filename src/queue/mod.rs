//! The broker seam: where messages are received, acknowledged and sent.
//!
//! Everything above this module (the [`server`](crate::server) and the
//! [`client`](crate::client)) talks to a broker only through two traits:
//!
//! * [`Inbox`]: one queue this process consumes. It receives [`Delivery`]s
//!   and settles each one exactly once: [`ack`](Inbox::ack) (delete),
//!   [`release`](Inbox::release) (make it visible again at once), or let its
//!   visibility lapse so the broker redelivers it. While a delivery is being
//!   worked on, [`extend`](Inbox::extend) keeps it hidden from other consumers.
//! * [`Outbox`]: sends a [`QueueMessage`] to a destination named by an address
//!   string (an SQS queue URL, a `memory://` queue, an SNS topic ARN).
//!
//! This module knows nothing of MCP: it moves opaque bodies and string
//! attributes. Implementations:
//!
//! * [`memory`]: an in-process broker with SQS semantics (visibility timeout,
//!   redelivery, receive count). The embedded default for the quickstart and
//!   for fast tests.
//! * `sqs` (feature `sqs`): Amazon SQS through `aws-sdk-sqs`, with adaptive
//!   batching of sends and deletes.
//! * `sns` (feature `sns`): publishing to Amazon SNS topics through
//!   `aws-sdk-sns`, with adaptive batching of publishes, and provisioning of
//!   topics and queue subscriptions. Messages published to a topic arrive in
//!   the SQS queues subscribed to it, so consuming is always an `sqs` inbox.
//!
//! * `webhook` (feature `webhook`): replies POSTed to webhook URLs, with an
//!   SSRF guard, retries and Standard Webhooks signatures.
//!
//! The SQS and SNS outboxes are one generic batched outbox (`batched`: the
//! prechecks, the per-destination size lookup and [`batch::Batcher`]) over a
//! small per-service trait that sends one batch; a further batching broker
//! is one more implementation of that trait.
//!
//! [`layer`] holds wrappers of both traits that add one concern each
//! (signatures, SNS envelopes, send retry), stacked by the builders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub(crate) mod address;
pub(crate) mod backoff;
pub mod batch;
#[cfg(feature = "sqs")]
pub(crate) mod batched;
#[cfg(feature = "sqs")]
mod destinations;
mod error;
pub mod layer;
pub mod memory;
#[cfg(feature = "sns")]
pub mod sns;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "webhook")]
pub mod webhook;

/// The most messages one receive call returns (the SQS limit).
pub const MAX_RECEIVE_BATCH: usize = 10;

/// The longest long poll SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// The largest message SQS accepts when a queue does not say otherwise (1 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1_048_576;

/// The most message attributes SQS accepts on one message.
pub const MAX_ATTRIBUTES: usize = 10;

pub use address::{is_fifo, is_queue_url, is_topic_arn};
pub use error::QueueError;

/// The value of one message attribute.
///
/// SQS knows three data types; MCP traffic uses only `String` and `Number`
/// (a number is carried as its decimal text, as SQS does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// An SQS `String` attribute.
    String(String),
    /// An SQS `Number` attribute, as its decimal text.
    Number(String),
}

impl AttributeValue {
    /// The attribute's text, whatever its data type.
    pub fn as_str(&self) -> &str {
        match self {
            AttributeValue::String(s) | AttributeValue::Number(s) => s,
        }
    }
}

/// Message attributes by name. Ordered so that encodings are deterministic.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// One message as a queue carries it: an opaque UTF-8 body and its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueMessage {
    /// The message body.
    pub body: String,
    /// The message attributes.
    pub attributes: Attributes,
    /// FIFO queues only: the message group.
    pub group_id: Option<String>,
    /// FIFO queues only: the deduplication id.
    pub deduplication_id: Option<String>,
}

impl QueueMessage {
    /// A message with this body and no attributes.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Sets a `String` attribute.
    pub fn with_string(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attributes
            .insert(name.to_owned(), AttributeValue::String(value.into()));
        self
    }

    /// The text of attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(AttributeValue::as_str)
    }

    /// Sets what a FIFO destination needs when `address` is one: the message
    /// group `group` (messages of one group are delivered in order, groups in
    /// parallel) and a fresh deduplication id (so two sends are never taken
    /// for one; duplicates are the server's to recognise). Leaves the message
    /// as it is for any other address.
    pub fn for_destination(mut self, address: &str, group: &str) -> Self {
        if is_fifo(address) {
            self.group_id = Some(group.to_owned());
            self.deduplication_id = Some(uuid::Uuid::new_v4().simple().to_string());
        }
        self
    }

    /// The size SQS counts against `MaximumMessageSize`: the body plus every
    /// attribute's name, data type and value.
    pub fn wire_size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| {
                    let data_type = match value {
                        AttributeValue::String(_) => "String".len(),
                        AttributeValue::Number(_) => "Number".len(),
                    };
                    name.len() + data_type + value.as_str().len()
                })
                .sum::<usize>()
    }
}

/// An opaque handle that settles one delivery (an SQS receipt handle).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// One message received from an [`Inbox`], not yet settled.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The broker's id of the message (stable across redeliveries).
    pub message_id: String,
    /// The handle that settles this delivery.
    pub receipt: Receipt,
    /// How many times the broker has delivered this message, this time included.
    pub receive_count: u32,
    /// The message.
    pub message: QueueMessage,
    /// Set by an inbox [`layer`] that refused the message but left it
    /// for the consumer to settle (see [`layer`]'s "Refusing without
    /// settling"): nothing the message claims can be trusted.
    pub refused: Option<Refused>,
    /// When the broker took the message (SQS `SentTimestamp`), if the
    /// inbox knows: set by the broker, so a sender cannot forge it, unlike
    /// a `Timestamp` attribute.
    pub sent_at: Option<std::time::SystemTime>,
}

/// Why an inbox [`layer`] refused a delivery: the layer's own error,
/// shared so that a delivery stays `Clone`.
#[derive(Clone)]
pub struct Refused(Arc<dyn std::error::Error + Send + Sync>);

impl Refused {
    /// A refusal for `reason`.
    pub fn new(reason: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(reason))
    }

    /// The layer's error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Refused").field(&self.0).finish()
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What an [`Inbox`] says about its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's address (its URL).
    pub address: String,
    /// How long a received message stays hidden unless extended.
    pub visibility_timeout: Duration,
    /// The largest message the queue accepts, in bytes.
    pub max_message_size: usize,
    /// Whether the queue is FIFO (needs a message group on send).
    pub fifo: bool,
    /// The AWS region of the client the queue was opened with, if any. The
    /// server's default reply policy takes it when the queue's address shows
    /// none (LocalStack's `http://localhost:4566/<account>/<name>`).
    pub region: Option<String>,
}

impl Delivery {
    /// A delivery of `message`, settled by `receipt`, delivered for the
    /// `receive_count`th time (from 1), not refused.
    pub fn new(
        message_id: impl Into<String>,
        receipt: Receipt,
        receive_count: u32,
        message: QueueMessage,
    ) -> Self {
        Self {
            message_id: message_id.into(),
            receipt,
            receive_count,
            message,
            refused: None,
            sent_at: None,
        }
    }

    /// The same delivery, sent (taken by the broker) at `sent_at`.
    pub fn with_sent_at(mut self, sent_at: std::time::SystemTime) -> Self {
        self.sent_at = Some(sent_at);
        self
    }
}

impl QueueInfo {
    /// The queue at `address`, FIFO when its name ends in `.fifo`
    /// ([`is_fifo`]), with no region; set the fields to say otherwise.
    pub fn new(
        address: impl Into<String>,
        visibility_timeout: Duration,
        max_message_size: usize,
    ) -> Self {
        let address = address.into();
        Self {
            fifo: is_fifo(&address),
            address,
            visibility_timeout,
            max_message_size,
            region: None,
        }
    }
}

/// A queue this process consumes.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// The queue's address and limits.
    fn info(&self) -> &QueueInfo;

    /// Waits up to `wait` for at most `max` messages (`1..=10`). Returns an
    /// empty vector when the wait ends with nothing to receive.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Deletes a delivered message: it will not be delivered again.
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError>;

    /// Keeps a delivered message hidden for `visibility` from now on.
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError>;

    /// Makes a delivered message visible again at once, for any consumer.
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError>;
}

/// Sends messages to destinations named by address.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Whether this outbox can send to `address` at all.
    fn accepts(&self, address: &str) -> bool;

    /// Sends one message. Returns once the broker has accepted it.
    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError>;

    /// The largest message `address` accepts, in bytes.
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError>;
}

#[async_trait]
impl<T: Inbox + ?Sized> Inbox for Arc<T> {
    fn info(&self) -> &QueueInfo {
        (**self).info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        (**self).receive(max, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        (**self).ack(receipt).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        (**self).extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        (**self).release(receipt).await
    }
}

#[async_trait]
impl<T: Outbox + ?Sized> Outbox for Arc<T> {
    fn accepts(&self, address: &str) -> bool {
        (**self).accepts(address)
    }
    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        (**self).send(address, message).await
    }
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        (**self).max_message_size(address).await
    }
}

/// An outbox that sends each address to the first of several outboxes that
/// [accepts](Outbox::accepts) it: e.g. `memory://` queues and SQS URLs in one
/// process, or SQS queues and SNS topics.
#[derive(Clone, Default)]
pub struct RoutingOutbox {
    routes: Vec<Arc<dyn Outbox>>,
}

impl std::fmt::Debug for RoutingOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The routes are trait objects without `Debug`; their count is what
        // can be shown.
        f.debug_struct("RoutingOutbox")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl RoutingOutbox {
    /// An outbox with no routes (accepts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route, tried after those added before it.
    pub fn with(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.routes.push(outbox);
        self
    }

    fn route(&self, address: &str) -> Result<&Arc<dyn Outbox>, QueueError> {
        self.routes
            .iter()
            .find(|outbox| outbox.accepts(address))
            .ok_or_else(|| QueueError::UnsupportedDestination(address.to_owned()))
    }
}

#[async_trait]
impl Outbox for RoutingOutbox {
    fn accepts(&self, address: &str) -> bool {
        self.routes.iter().any(|outbox| outbox.accepts(address))
    }
    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        self.route(address)?.send(address, message).await
    }
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.route(address)?.max_message_size(address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_fill_what_they_can_tell() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo";
        let info = QueueInfo::new(url, Duration::from_secs(30), 1024);
        assert!(info.fifo);
        assert_eq!((info.address.as_str(), info.region), (url, None));
        assert!(!QueueInfo::new("memory://q", Duration::ZERO, 1).fifo);

        let delivery = Delivery::new("id", Receipt("r".to_owned()), 2, QueueMessage::new("b"));
        assert_eq!(delivery.message_id, "id");
        assert_eq!(delivery.receive_count, 2);
        assert_eq!(delivery.message.body, "b");
    }

    #[test]
    fn a_routing_outbox_shows_its_routes() {
        let memory = memory::MemoryBroker::new();
        let routing = RoutingOutbox::new()
            .with(Arc::new(memory.outbox()))
            .with(Arc::new(memory.outbox()));
        assert_eq!(format!("{routing:?}"), "RoutingOutbox { routes: 2 }");
    }
}

//! [`QueueClientConfig`] and [`QueueClientBuilder`]: a client's settings and
//! how a [`QueueClientTransport`] is put together from them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

use super::{ClientError, QueueClientTransport};
use crate::queue::layer::stack::Stacked;
use crate::queue::layer::{Layers, RetryLayer, SignLayer, VerifyLayer};
use crate::queue::memory::{MemoryBroker, MemoryQueueOptions};
use crate::queue::{Inbox, Outbox};
use crate::wire::Detail;
use crate::wire::signing::{Signing, SigningKeys};

/// Settings of a [`QueueClientTransport`]; set them through its
/// [builder](QueueClientTransport::builder).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueClientConfig {
    /// Where requests go: the server's request queue, or the SNS topic its
    /// request queue is subscribed to.
    pub server_address: String,
    /// The address servers send replies to (`ReplyTo`, and the reply key of
    /// a legacy `initialize`). Default: the reply queue itself. Set it to an
    /// SNS topic that the reply queue is subscribed to.
    pub reply_address: Option<String>,
    /// The name this client's connections are known by. Each connection
    /// sends `ClientId` = `<client_id>.<16 random hex digits>`, unique to it
    /// ([`QueueClientTransport::client_id`]), so that transports built from
    /// one configuration, or a pipeline restarted with a fixed id, never
    /// share an id: they would take each other's replies on a shared reply
    /// queue. Default: a random UUID. Filter policies on a shared reply
    /// topic match the connection's id (or use a `prefix` match on this
    /// name).
    pub client_id: String,
    /// Long-poll wait on the reply queue. Default 20 s. Closing a client
    /// whose reply queue was given (and so may be shared) waits for a poll
    /// in progress to end, at most this long.
    pub wait: Duration,
    /// Concurrent long polls of the reply queue. Default 1.
    pub pollers: usize,
    /// How long a response that overtook notifications of its request waits
    /// for them before it is handed over anyway. Default 1 s. Brokers that
    /// reorder (standard SQS queues, SNS) make this wait rare and short; it
    /// matters only when a notification was lost.
    pub order_wait: Duration,
    /// Message signing (see [`signing`](crate::wire::signing)): requests are
    /// signed, replies checked, and a reply that fails the check is dropped
    /// with a warning. Default none.
    pub signing: Option<Signing>,
    /// How long a send that fails for a passing reason (the broker cannot be
    /// reached, throttling) is retried, with a backoff from 100 ms to 5 s,
    /// before the call fails with the error (see
    /// [`RetryLayer`](crate::queue::layer::RetryLayer)). Default 60 s.
    /// Closing the transport ends retries in progress. A retried send may
    /// deliver a request twice; the server answers the copy from its replay
    /// cache. Errors that retrying cannot mend (a message too large, a
    /// missing queue) fail at once.
    pub send_retry: Duration,
    /// On a shared reply queue: how many times (the broker's receive count)
    /// a message stamped with another connection's `ClientId` or session
    /// may have been received before it is taken for an orphan, a reply
    /// whose client is gone, and deleted with a warning rather than released
    /// once more. Default 1000. A live client is in danger of losing a reply
    /// only if the other clients receive it this many times before it does
    /// itself: with `k` clients polling alike, about `(1 - 1/k)^n`, so keep
    /// `n` at least 20 times the number of clients sharing the queue (1000
    /// suits up to 50). To keep orphans rather than delete them, give the
    /// queue a redrive policy with a lower `maxReceiveCount` (see
    /// docs/wire.md). Values below 1 count as 1.
    pub orphan_after: u32,
    /// Which attributes requests carry. Default [`Detail::Lean`]: only
    /// `ClientId`, `ReplyTo` and the session, which is all an asyncmcp or a
    /// Python asyncmcp server reads (fewer attributes, less broker work per
    /// message). [`Detail::Full`] adds `MessageType`, `Timestamp`, `Method`
    /// and `RequestId`, for an SNS filter policy or other tooling that reads
    /// them.
    pub attribute_detail: Detail,
    /// Whether lean requests keep their `RequestId`: when an outbox layer
    /// may replace the body (offload puts a pointer there), the attribute is
    /// how a server answers a request whose payload it cannot fetch.
    pub(crate) request_ids: bool,
}

impl QueueClientConfig {
    /// Defaults for a client of the server at `server_address`.
    pub fn new(server_address: impl Into<String>) -> Self {
        Self {
            server_address: server_address.into(),
            reply_address: None,
            client_id: uuid::Uuid::new_v4().to_string(),
            wait: Duration::from_secs(20),
            pollers: 1,
            order_wait: Duration::from_secs(1),
            signing: None,
            send_retry: Duration::from_secs(60),
            orphan_after: 1000,
            attribute_detail: Detail::Lean,
            request_ids: false,
        }
    }
}

/// Builds a [`QueueClientTransport`]: settings first, then the broker it
/// talks through ([`build`](Self::build), [`memory`](Self::memory),
/// `connect_sqs`, `connect_sns_sqs`).
///
/// ```no_run
/// # use asyncmcp::{MemoryBroker, QueueClientTransport};
/// # use std::time::Duration;
/// # fn demo(broker: MemoryBroker) -> Result<(), asyncmcp::client::ClientError> {
/// let transport = QueueClientTransport::builder("memory://requests")
///     .client_id("report-pipeline")
///     .send_retry(Duration::from_secs(10))
///     .memory(&broker)?;
/// # Ok(()) }
/// ```
pub struct QueueClientBuilder {
    pub(super) config: QueueClientConfig,
    /// An existing reply queue (`reply_queue`, feature `sqs`).
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    pub(super) reply_queue: Option<String>,
    layers: Layers,
}

impl std::fmt::Debug for QueueClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueClientBuilder")
            .field("config", &self.config)
            .field("reply_queue", &self.reply_queue)
            .field("layers", &self.layers)
            .finish()
    }
}

impl QueueClientBuilder {
    pub(super) fn new(server_address: String) -> Self {
        Self {
            config: QueueClientConfig::new(server_address),
            reply_queue: None,
            layers: Layers::default(),
        }
    }

    /// Sets the name this client's connections are known by; see
    /// [`QueueClientConfig::client_id`].
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.config.client_id = client_id.into();
        self
    }
    /// Names `address` (e.g. an SNS topic the reply queue is subscribed to)
    /// as where replies go; see [`QueueClientConfig::reply_address`].
    pub fn reply_address(mut self, address: impl Into<String>) -> Self {
        self.config.reply_address = Some(address.into());
        self
    }
    /// Sets the long-poll wait on the reply queue (at most 20 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config.wait = wait.min(crate::queue::MAX_WAIT);
        self
    }
    /// Sets the concurrent long polls of the reply queue (at least 1).
    pub fn pollers(mut self, pollers: usize) -> Self {
        self.config.pollers = pollers.max(1);
        self
    }
    /// Sets how long a response waits for notifications it overtook; see
    /// [`QueueClientConfig::order_wait`].
    pub fn order_wait(mut self, wait: Duration) -> Self {
        self.config.order_wait = wait;
        self
    }
    /// Signs every request with `keys` and drops replies whose signature
    /// does not verify; with `required`, also those without one.
    pub fn signing(mut self, keys: SigningKeys, required: bool) -> Self {
        self.config.signing = Some(Signing { keys, required });
        self
    }
    /// Sets which attributes requests carry; see
    /// [`QueueClientConfig::attribute_detail`].
    pub fn attribute_detail(mut self, detail: Detail) -> Self {
        self.config.attribute_detail = detail;
        self
    }
    /// Sets how long a send failing for a passing reason is retried; see
    /// [`QueueClientConfig::send_retry`].
    pub fn send_retry(mut self, retry: Duration) -> Self {
        self.config.send_retry = retry;
        self
    }
    /// Sets how often another connection's reply may be received before it
    /// is deleted as an orphan; see [`QueueClientConfig::orphan_after`].
    pub fn orphan_after(mut self, receives: u32) -> Self {
        self.config.orphan_after = receives.max(1);
        self
    }
    /// Wraps the reply inbox in `layer`, between the broker (out of any SNS
    /// envelope) and the signature check; layers added later wrap those
    /// added before. See [`layer`](crate::queue::layer).
    pub fn inbox_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Arc<dyn Inbox>> + Send + 'static,
        L::Service: Inbox,
    {
        self.layers.push_inbox(layer);
        self
    }
    /// Wraps the outbox in `layer`, between signing and the broker; layers
    /// added later wrap those added before. See
    /// [`layer`](crate::queue::layer).
    pub fn outbox_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Arc<dyn Outbox>> + Send + 'static,
        L::Service: Outbox,
    {
        self.layers.push_outbox(layer);
        // It may replace the body (offload does): see `request_ids`.
        self.config.request_ids = true;
        self
    }
    /// Moves bodies over the queue's limit to S3 and back: pushes an
    /// [`OffloadLayer`](crate::queue::layer::OffloadLayer) on both the inbox
    /// and the outbox (below signing, so signatures cover the real body).
    /// See [`offload`](crate::queue::layer::offload).
    #[cfg(feature = "offload")]
    pub fn offload(self, settings: crate::queue::layer::S3Offload) -> Self {
        let layer = crate::queue::layer::OffloadLayer::new(settings);
        self.inbox_layer(layer.clone()).outbox_layer(layer)
    }
    /// The settings so far.
    pub fn config(&self) -> &QueueClientConfig {
        &self.config
    }

    /// A client that receives replies on `reply_inbox` and sends through
    /// `outbox`. Starts polling the reply queue at once.
    pub fn build(
        self,
        reply_inbox: impl Inbox + 'static,
        outbox: impl Outbox + 'static,
    ) -> QueueClientTransport {
        let client_id = super::connection_id(&self.config.client_id);
        self.build_as(reply_inbox, outbox, client_id)
    }

    /// [`build`](Self::build) with the connection's `ClientId` chosen
    /// already (by a constructor that provisions a filter policy on it).
    pub(super) fn build_as(
        self,
        reply_inbox: impl Inbox + 'static,
        outbox: impl Outbox + 'static,
        client_id: String,
    ) -> QueueClientTransport {
        // The layers of `queue::layer`, and the send retry outermost.
        let signing = self.config.signing.as_ref();
        let verify = signing.map(|signing| VerifyLayer::new(signing.clone()));
        let sign = signing.map(|signing| SignLayer::new(signing.keys.clone()));
        let Stacked { inbox, outbox, .. } =
            self.layers
                .stack(Arc::new(reply_inbox), Arc::new(outbox), verify, sign);
        // Closing the transport ends retries in progress.
        let stop = CancellationToken::new();
        let outbox = Arc::new(
            RetryLayer::new(self.config.send_retry)
                .stop_on(stop.clone())
                .layer(outbox),
        );
        QueueClientTransport::assemble(inbox, outbox, self.config, client_id, stop)
    }

    /// A client on an in-process broker, with a reply queue of its own that
    /// is created now and deleted on close.
    pub fn memory(self, broker: &MemoryBroker) -> Result<QueueClientTransport, ClientError> {
        let name = format!("asyncmcp-reply-{}", uuid::Uuid::new_v4().simple());
        let address = broker.create_queue(&name, MemoryQueueOptions::default());
        let inbox = broker.inbox(&address)?;
        let cleanup_broker = broker.clone();
        Ok(self
            .build(inbox, broker.outbox())
            .on_close(Box::new(move || {
                Box::pin(async move {
                    cleanup_broker.delete_queue(&address);
                })
            })))
    }
}

//! [`BatchBuilder`]: a batch's settings, and putting a [`Batch`] together
//! from them and a broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

#[cfg(feature = "sqs")]
use super::BatchError;
use super::{Batch, Pending, Shared};
use crate::queue::layer::stack::Stacked;
use crate::queue::layer::{Layers, RetryLayer, SignLayer, VerifyLayer};
use crate::queue::{Inbox, Outbox};
use crate::wire::Detail;
use crate::wire::signing::{Signing, SigningKeys};

/// Builds a [`Batch`]: settings, then the broker ([`build`](Self::build),
/// `connect_sqs` with feature `sqs`).
///
/// ```no_run
/// # use asyncmcp::client::batch::{Batch, Call};
/// # async fn demo(sqs: asyncmcp::queue::sqs::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let mut batch = Batch::builder("https://sqs.us-east-1.amazonaws.com/123456789012/mcp")
///     .client_id("nightly-report.5f1c")
///     .reply_queue("https://sqs.us-east-1.amazonaws.com/123456789012/nightly-replies")
///     .in_flight(64)
///     .connect_sqs(&sqs)
///     .await?;
/// let submitter = batch.submitter();
/// tokio::spawn(async move {
///     for n in 0..1000 {
///         let call = Call::new("add", serde_json::json!({"a": n, "b": 1}).as_object().cloned());
///         submitter.submit(&n.to_string(), &call).await?;
///     }
///     Ok::<_, asyncmcp::client::batch::BatchError>(())
/// });
/// while let Some(answer) = batch.next().await {
///     println!("{}: {:?}", answer.key, answer.outcome);
///     batch.ack(&answer).await?; // kept: delete it from the reply queue
/// #   break;
/// }
/// # Ok(()) }
/// ```
pub struct BatchBuilder {
    server_address: String,
    client_id: String,
    reply_address: Option<String>,
    reply_queue: Option<String>,
    in_flight: usize,
    wait: Duration,
    receivers: usize,
    signing: Option<Signing>,
    send_retry: Duration,
    orphan_after: u32,
    attribute_detail: Detail,
    #[cfg(feature = "offload")]
    offload: Option<crate::queue::layer::S3Offload>,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("server_address", &self.server_address)
            .field("client_id", &self.client_id)
            .field("reply_queue", &self.reply_queue)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl BatchBuilder {
    pub(super) fn new(server_address: String) -> Self {
        Self {
            server_address,
            client_id: format!("batch.{}", uuid::Uuid::new_v4().simple()),
            reply_address: None,
            reply_queue: None,
            in_flight: 64,
            wait: Duration::from_secs(20),
            receivers: 2,
            signing: None,
            send_retry: Duration::from_secs(60),
            orphan_after: 1000,
            attribute_detail: Detail::Lean,
            #[cfg(feature = "offload")]
            offload: None,
        }
    }

    /// The `ClientId` every call carries, used as given: keep it to reattach
    /// after a restart. Default `batch.<random>`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }
    /// The existing queue answers are received on (`connect_sqs`); see
    /// [`create_reply_queue`](super::create_reply_queue) to make one.
    pub fn reply_queue(mut self, url: impl Into<String>) -> Self {
        self.reply_queue = Some(url.into());
        self
    }
    /// Where servers send answers, when not the reply queue itself (an SNS
    /// topic it is subscribed to).
    pub fn reply_address(mut self, address: impl Into<String>) -> Self {
        self.reply_address = Some(address.into());
        self
    }
    /// The most calls pending at once (at least 1). Default 64.
    pub fn in_flight(mut self, calls: usize) -> Self {
        self.in_flight = calls.max(1);
        self
    }
    /// The long-poll wait on the reply queue (at most 20 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(crate::queue::MAX_WAIT);
        self
    }
    /// Concurrent long polls of the reply queue (at least 1). Default 2.
    pub fn receivers(mut self, receivers: usize) -> Self {
        self.receivers = receivers.max(1);
        self
    }
    /// Signs every request with `keys` and deletes answers whose signature
    /// does not verify; with `required`, also those without one.
    pub fn signing(mut self, keys: SigningKeys, required: bool) -> Self {
        self.signing = Some(Signing { keys, required });
        self
    }
    /// How long a send failing for a passing reason is retried. Default 60 s.
    pub fn send_retry(mut self, retry: Duration) -> Self {
        self.send_retry = retry;
        self
    }
    /// How often another client's reply may be received before it is
    /// deleted as an orphan. Default 1000.
    pub fn orphan_after(mut self, receives: u32) -> Self {
        self.orphan_after = receives.max(1);
        self
    }
    /// Which attributes calls carry. Default [`Detail::Lean`]: `ClientId`
    /// and `ReplyTo` only; see
    /// [`QueueClientConfig::attribute_detail`](crate::client::QueueClientConfig::attribute_detail).
    pub fn attribute_detail(mut self, detail: Detail) -> Self {
        self.attribute_detail = detail;
        self
    }
    /// Moves bodies over the queue's limit to S3 and back (below signing);
    /// see [`offload`](crate::queue::layer::offload). An answer's object is
    /// deleted when the answer is [acked](super::Batch::ack).
    #[cfg(feature = "offload")]
    pub fn offload(mut self, settings: crate::queue::layer::S3Offload) -> Self {
        self.offload = Some(settings);
        self
    }

    /// A batch receiving answers on `reply_inbox` and sending through
    /// `outbox`. Nothing is received before the first
    /// [`Batch::next`](super::Batch::next).
    pub fn build(self, reply_inbox: impl Inbox + 'static, outbox: impl Outbox + 'static) -> Batch {
        let verify = self.signing.as_ref().map(|s| VerifyLayer::new(s.clone()));
        let sign = self
            .signing
            .as_ref()
            .map(|s| SignLayer::new(s.keys.clone()));
        #[allow(unused_mut, reason = "layers are added with feature `offload` only")]
        let mut layers = Layers::default();
        #[cfg(feature = "offload")]
        let offloads = self.offload.is_some();
        #[cfg(feature = "offload")]
        if let Some(settings) = self.offload {
            let layer = crate::queue::layer::OffloadLayer::new(settings);
            layers.push_inbox(layer.clone());
            layers.push_outbox(layer);
        }
        let unsigned_trusted = !self.signing.as_ref().is_some_and(|s| s.required);
        let Stacked { inbox, outbox, .. } =
            layers.stack(Arc::new(reply_inbox), Arc::new(outbox), verify, sign);
        let stop = CancellationToken::new();
        let outbox: Arc<dyn Outbox> = Arc::new(
            RetryLayer::new(self.send_retry)
                .stop_on(stop.clone())
                .layer(outbox),
        );
        let reply_address = self
            .reply_address
            .unwrap_or_else(|| inbox.info().address.clone());
        let shared = Arc::new(Shared {
            outbox,
            inbox,
            server_address: self.server_address,
            reply_address,
            client_id: self.client_id,
            attribute_detail: self.attribute_detail,
            #[cfg(feature = "offload")]
            request_ids: offloads,
            #[cfg(not(feature = "offload"))]
            request_ids: false,
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                keys: Default::default(),
                limit: self.in_flight,
            }),
            freed: Notify::new(),
            stop,
            unsigned_trusted,
        });
        Batch {
            shared,
            answers: None,
            receivers: self.receivers,
            wait: self.wait,
            orphan_after: self.orphan_after,
            tasks: Vec::new(),
        }
    }

    /// Connects through `client` to a server whose request queue is the
    /// builder's server address, receiving on the
    /// [`reply_queue`](Self::reply_queue), which must be set.
    #[cfg(feature = "sqs")]
    pub async fn connect_sqs(
        mut self,
        client: &crate::queue::sqs::Client,
    ) -> Result<Batch, BatchError> {
        use crate::queue::sqs::{SqsInbox, SqsOutbox};
        let Some(url) = self.reply_queue.take() else {
            return Err(BatchError::NoReplyQueue);
        };
        let inbox = SqsInbox::open(client.clone(), &url).await?;
        Ok(self.build(inbox, SqsOutbox::new(client.clone())))
    }
}

/// Creates (or finds, when it exists with the same attributes) the SQS
/// queue `name` to receive a batch's answers, and returns its URL: record
/// it to reattach after a restart. Its visibility timeout is
/// `visibility`: how long an answer received by a pipeline that stopped
/// before keeping it stays hidden from the next run.
#[cfg(feature = "sqs")]
pub async fn create_reply_queue(
    client: &crate::queue::sqs::Client,
    name: &str,
    visibility: Duration,
) -> Result<String, BatchError> {
    use crate::queue::sqs::{self, SqsQueueOptions};
    let options = SqsQueueOptions::default().with_visibility_timeout(visibility);
    Ok(sqs::create_queue(client, name, &options).await?)
}

//! [`QueueServerBuilder`]: how a [`QueueServer`] is put together: its
//! settings, and the [layers](crate::queue::layer) its inbox and outbox are
//! wrapped in.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::limits::Rate;
use super::{DeadLetter, QueueServer, ReplyPolicy, ServerConfig, ServiceFactory, dispatch};
use crate::queue::layer::stack::Stacked;
use crate::queue::layer::{Layers, SignLayer, VerifyLayer};
use crate::queue::{Inbox, Outbox};
use crate::tasks::TaskSettings;
use crate::wire::Detail;
use crate::wire::session::SessionKeys;
use crate::wire::signing::{Signing, SigningKeys};

/// Builds a [`QueueServer`]: [`QueueServer::builder`] (any inbox and
/// outbox) or, with the AWS settings of the environment, `QueueServer::sqs`
/// (feature `sqs`).
pub struct QueueServerBuilder {
    inbox: Arc<dyn Inbox>,
    outbox: Arc<dyn Outbox>,
    config: ServerConfig,
    layers: Layers,
}

/// Shows the configuration so far and the request queue's address.
impl fmt::Debug for QueueServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueServerBuilder")
            .field("queue", &self.inbox.info().address)
            .field("config", &self.config)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl QueueServer<()> {
    /// Starts building a server that consumes `inbox` and replies through
    /// `outbox`.
    pub fn builder(
        inbox: impl Inbox + 'static,
        outbox: impl Outbox + 'static,
    ) -> QueueServerBuilder {
        let config = ServerConfig::new(inbox.info());
        QueueServerBuilder {
            inbox: Arc::new(inbox),
            outbox: Arc::new(outbox),
            config,
            layers: Layers::default(),
        }
    }
}

impl QueueServerBuilder {
    /// Sets the most concurrent long polls (at least 1; see
    /// [`ServerConfig::pollers`]).
    pub fn pollers(mut self, pollers: usize) -> Self {
        self.config.pollers = pollers.max(1);
        self
    }
    /// Sets how many requests run at once (at least 1).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.config.max_in_flight = max.max(1);
        self
    }
    /// Sets the long-poll wait (at most 20 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config.wait = wait.min(crate::queue::MAX_WAIT);
        self
    }
    /// Cancels requests that run longer than `timeout`, answering a JSON-RPC error.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = Some(timeout);
        self
    }
    /// Sets the shutdown grace period.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }
    /// Sets the keys that seal session ids (share them between replicas).
    pub fn session_keys(mut self, keys: SessionKeys) -> Self {
        self.config.session_keys = keys;
        self
    }
    /// Replaces the reply address allow-list.
    pub fn reply_policy(mut self, policy: ReplyPolicy) -> Self {
        self.config.reply_policy = policy;
        self
    }
    /// Adds an allowed reply address prefix to the default allow-list.
    pub fn allow_reply_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.reply_policy = self.config.reply_policy.allow(prefix);
        self
    }
    /// Sends every reply to `address` (e.g. a shared SNS reply topic),
    /// whatever the request names; see [`ServerConfig::shared_reply_address`].
    pub fn shared_reply_address(mut self, address: impl Into<String>) -> Self {
        self.config.shared_reply_address = Some(address.into());
        self
    }
    /// Sets which attributes replies carry; see
    /// [`ServerConfig::attribute_detail`].
    pub fn attribute_detail(mut self, detail: Detail) -> Self {
        self.config.attribute_detail = detail;
        self
    }
    /// Sets how long answered requests are kept for replay to duplicates
    /// (zero turns replay off); see [`ServerConfig::replay_window`].
    pub fn replay_window(mut self, window: Duration) -> Self {
        self.config.replay_window = window;
        self
    }
    /// Sets the most memory kept for replay; see [`ServerConfig::replay_budget`].
    pub fn replay_budget(mut self, bytes: usize) -> Self {
        self.config.replay_budget = bytes;
        self
    }
    /// Dead-letters requests delivered more than `max_receive_count` times to
    /// `address`, with the reason; see [`DeadLetter`].
    pub fn dead_letter(mut self, address: impl Into<String>, max_receive_count: u32) -> Self {
        self.config.dead_letter = Some(DeadLetter {
            address: address.into(),
            max_receive_count: max_receive_count.max(1),
        });
        self
    }
    /// Signs every reply with `keys` and refuses requests whose signature
    /// does not verify; with `required`, also those without one.
    pub fn signing(mut self, keys: SigningKeys, required: bool) -> Self {
        self.config.signing = Some(Signing { keys, required });
        self
    }

    /// How long ago a signed request may have been sent; see
    /// [`ServerConfig::signature_max_age`].
    pub fn signature_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.config.signature_max_age = max_age;
        self
    }

    /// Sets the longest a request is kept hidden from its receipt (default
    /// 12 h, the SQS cap); see [`ServerConfig::visibility_ceiling`].
    pub fn visibility_ceiling(mut self, ceiling: Duration) -> Self {
        self.config.visibility_ceiling = ceiling;
        self
    }

    /// Runs tool calls as durable tasks kept in a store every replica
    /// shares, for clients that declare the tasks extension: a
    /// [`TaskStore`](crate::tasks::TaskStore), or [`TaskSettings`] to choose
    /// the tools, the TTL and the intervals. See [`tasks`](crate::tasks).
    pub fn tasks(mut self, settings: impl Into<TaskSettings>) -> Self {
        self.config.tasks = Some(settings.into());
        self
    }
    /// Runs at most `calls` calls of tool `name` at once on this replica
    /// (at least 1); more wait in the queue. See [`limits`](super::limits).
    pub fn tool_limit(mut self, name: impl Into<String>, calls: usize) -> Self {
        self.config
            .limits
            .tools
            .entry(name.into())
            .or_default()
            .concurrency = Some(calls.max(1));
        self
    }
    /// Starts at most `per_second` calls of tool `name` a second on this
    /// replica, in bursts of up to `burst` (a token bucket); more wait in
    /// the queue. A rate that is not a positive number sets no rate.
    pub fn tool_rate(mut self, name: impl Into<String>, per_second: f64, burst: u32) -> Self {
        self.config
            .limits
            .tools
            .entry(name.into())
            .or_default()
            .rate = Rate::new(per_second, burst);
        self
    }
    /// Runs at most `calls` calls at once of each tool not named by
    /// [`tool_limit`](Self::tool_limit) or [`tool_rate`](Self::tool_rate)
    /// (each such tool on its own).
    pub fn default_tool_limit(mut self, calls: usize) -> Self {
        self.config.limits.default.concurrency = Some(calls.max(1));
        self
    }
    /// Starts at most `per_second` calls a second (bursts of `burst`) of
    /// each tool not named by [`tool_limit`](Self::tool_limit) or
    /// [`tool_rate`](Self::tool_rate) (each such tool on its own).
    pub fn default_tool_rate(mut self, per_second: f64, burst: u32) -> Self {
        self.config.limits.default.rate = Rate::new(per_second, burst);
        self
    }
    /// Runs at most `calls` tool calls of one caller (session, else
    /// `ClientId`, else reply address) at once on this replica.
    pub fn caller_limit(mut self, calls: usize) -> Self {
        self.config.limits.per_caller = Some(calls.max(1));
        self
    }
    /// How long a call may wait for its limits before it is answered with
    /// [`LIMIT_WAIT_EXCEEDED`](super::LIMIT_WAIT_EXCEEDED) (default 15 min).
    pub fn max_limit_wait(mut self, wait: Duration) -> Self {
        self.config.limits.max_wait = wait;
        self
    }
    /// Replaces all the tool limits; see [`ToolLimits`](super::ToolLimits).
    pub fn tool_limits(mut self, limits: super::ToolLimits) -> Self {
        self.config.limits = limits;
        self
    }
    /// The configuration so far.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
    /// Wraps the request inbox in `layer`, between the broker (out of any
    /// SNS envelope) and the signature check; layers added later wrap those
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
    /// Builds the server; `factory` makes a fresh rmcp service per request.
    pub fn build<F: ServiceFactory>(self, factory: F) -> QueueServer<F> {
        let signing = self.config.signing.as_ref();
        let verify = signing.map(|signing| {
            VerifyLayer::new(signing.clone()).max_age(self.config.signature_max_age)
        });
        let sign = signing.map(|signing| SignLayer::new(signing.keys.clone()));
        // Answers to refused messages go out unsigned (see dispatch).
        let Stacked {
            inbox,
            outbox,
            unsigned_outbox,
        } = self.layers.stack(self.inbox, self.outbox, verify, sign);
        QueueServer {
            shared: Arc::new(dispatch::Shared::new(
                factory,
                inbox,
                outbox,
                unsigned_outbox,
                self.config,
            )),
        }
    }
}

#[cfg(feature = "sqs")]
impl QueueServer<()> {
    /// Starts building a server on the SQS request queue `queue_url`, with
    /// the AWS settings of the environment
    /// ([`sqs::sdk_config_from_env`](crate::queue::sqs::sdk_config_from_env)):
    /// it replies to SQS queues and, with feature `sns`, SNS topics.
    pub async fn sqs(queue_url: &str) -> Result<QueueServerBuilder, crate::queue::QueueError> {
        use crate::queue::sqs::{self, SqsInbox, SqsOutbox};
        let sdk = sqs::sdk_config_from_env().await;
        let sqs_client = sqs::client(&sdk);
        let inbox = SqsInbox::open(sqs_client.clone(), queue_url).await?;
        let outbox = crate::queue::RoutingOutbox::new();
        #[cfg(feature = "sns")]
        let outbox = outbox.with(Arc::new(crate::queue::sns::SnsOutbox::new(
            crate::queue::sns::client(&sdk),
        )));
        let outbox = outbox.with(Arc::new(SqsOutbox::new(sqs_client)));
        Ok(Self::builder(inbox, outbox))
    }
}

//! [`QueueServer`]: an rmcp server behind a request queue.
//!
//! ```text
//! pollers ──► dispatcher (bounded in-flight) ──► one rmcp service per request
//!                                                  │
//!              ack (delete) ◄── final response ◄───┘ replies to the reply address
//! ```
//!
//! * **Pollers** (`poller.rs`): several concurrent long polls of the request
//!   queue. A poller asks for only as many messages as there are free
//!   in-flight slots, and stops receiving while there are none
//!   (backpressure).
//! * **Dispatch** (`dispatch/`): decodes each delivery, checks its signature,
//!   works out where its replies go and checks that address against the
//!   [`ReplyPolicy`], then routes it: requests to a fresh service,
//!   `notifications/cancelled` to the request it names, anything refused or
//!   unservable to an error reply or the bin; and settles it. Its module
//!   docs list where each step happens.
//! * **One request** (`request.rs`): the request runs through a fresh rmcp
//!   service built by the factory (stateless per message, like rmcp's
//!   stateless Streamable HTTP), so any replica can serve any message. Its
//!   notifications and final response go to the reply address in order; the
//!   request is deleted only after the final response is sent (late ack);
//!   its visibility is extended while it runs.
//!
//! Sessions of the initialize-based protocol versions are carried by
//! [sealed session ids](crate::wire::session), so no replica keeps state.
//! Server-to-client requests (sampling, elicitation, roots on legacy
//! versions) cannot be carried by a stateless server and are not supported.

mod builder;
mod clip;
mod dead_letter;
mod dispatch;
mod heartbeat;
mod inflight;
pub mod limits;
pub mod policy;
mod poller;
mod redeliver;
mod replay;
mod request;
mod task;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rmcp::{RoleServer, Service};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use builder::QueueServerBuilder;
pub use limits::{LIMIT_WAIT_EXCEEDED, ToolLimits};
pub use policy::{Refusal, ReplyPolicy};
pub use redeliver::Redeliver;
pub use request::REQUEST_TIMEOUT;

use crate::queue::{Inbox, QueueInfo};
use crate::tasks::TaskSettings;
use crate::wire::Detail;
use crate::wire::session::SessionKeys;
use crate::wire::signing::Signing;

/// Builds a fresh rmcp service for each request.
pub trait ServiceFactory: Send + Sync + 'static {
    /// The service type.
    type Service: Service<RoleServer>;
    /// A new service instance.
    fn make(&self) -> Self::Service;
}

impl<F, S> ServiceFactory for F
where
    F: Fn() -> S + Send + Sync + 'static,
    S: Service<RoleServer>,
{
    type Service = S;
    fn make(&self) -> S {
        self()
    }
}

/// Tunables of a [`QueueServer`]. The defaults suit most deployments.
///
/// Set through [`QueueServerBuilder`], and read with
/// [`QueueServerBuilder::config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The most concurrent long polls of the request queue. Default 4.
    ///
    /// One always polls; another joins each time a receive comes back full
    /// (messages are waiting) and leaves when its receive comes back short,
    /// so a lightly loaded server receives fuller batches and an idle one
    /// makes one long poll at a time.
    pub pollers: usize,
    /// Requests handled at once; pollers stop receiving at this many.
    /// Default 64.
    pub max_in_flight: usize,
    /// Long-poll wait. Default 20 s (the SQS maximum).
    pub wait: Duration,
    /// A request running longer than this is cancelled and answered with a
    /// JSON-RPC error. Default none.
    pub request_timeout: Option<Duration>,
    /// On shutdown, how long in-flight requests may run before they are
    /// released to another replica. Default 30 s. Shutdown can take up to
    /// [`wait`](Self::wait) longer when a long poll is in progress: it is
    /// let finish (and what it returns released), never abandoned.
    pub shutdown_grace: Duration,
    /// Keys sealing session ids. Default: a random per-process key (configure
    /// shared keys when running several replicas).
    pub session_keys: SessionKeys,
    /// Allowed reply addresses. Default: queues beside the request queue
    /// and SNS topics of its account and region (the inbox's
    /// [`QueueInfo::region`] when the queue URL shows none); see
    /// [`ReplyPolicy::same_account_as_in`].
    pub reply_policy: ReplyPolicy,
    /// Where every reply goes, whatever address a request names: typically
    /// one SNS topic shared by all clients, each of which subscribes its
    /// queue with a filter policy on its own `ClientId` (replies carry the
    /// request's `ClientId`; see [`attribute_detail`](Self::attribute_detail)
    /// for `SessionId`). Default none: replies go to the
    /// address each request names, checked against
    /// [`reply_policy`](Self::reply_policy).
    pub shared_reply_address: Option<String>,
    /// How long the final response of an answered request is kept, so that
    /// a duplicate delivery (a redelivery, or a client sending the request
    /// again) is answered with it instead of running the handler again.
    /// Default 5 minutes; zero turns replay off. Per process: a duplicate
    /// that reaches another replica runs again.
    pub replay_window: Duration,
    /// The most memory the replay cache holds: the kept responses and their
    /// bookkeeping; the oldest are dropped first. Default 64 MiB.
    pub replay_budget: usize,
    /// Where requests that can never be served go, with the reason. Default
    /// none: such requests are left to the queue's own redrive policy, which
    /// moves them without a reason.
    pub dead_letter: Option<DeadLetter>,
    /// Message signing (see [`signing`](crate::wire::signing)): replies are
    /// signed, requests checked. Default none: nothing is signed, and a
    /// signature on a request is not checked.
    pub signing: Option<Signing>,
    /// With signing on, how long ago a signed request may have been sent
    /// (its signed `Timestamp`); older ones are refused, so a captured
    /// request cannot be run again later. Default 15 minutes; `None` takes
    /// any age. Set it above the longest a request may wait in the queue
    /// (a backlog), and keep [`replay_window`](Self::replay_window) at
    /// least as long to answer a re-sent copy within it from the replay
    /// cache rather than run it again (per process).
    pub signature_max_age: Option<Duration>,
    /// The longest a received request can be kept hidden, counted from its
    /// receipt: SQS caps a message's total visibility at 12 h, after which
    /// every extension fails and the request reappears for another run.
    /// Extensions never reach past it, and a call still running near it is
    /// cancelled and answered with a timeout error (`-32001`) naming it.
    /// Default 12 h; lower it only for a broker with a shorter cap, or in
    /// tests.
    pub visibility_ceiling: Duration,
    /// Tool calls run as durable tasks (see [`tasks`](crate::tasks)), and
    /// `tasks/get|update|cancel` answered from their store. Default none:
    /// every call gets an ordinary result, and the task methods reach the
    /// service.
    pub tasks: Option<TaskSettings>,
    /// Per-tool concurrency and rate limits and a cap per caller, per
    /// replica; a call over one waits in the queue (see
    /// [`limits`]). Default: none.
    pub limits: ToolLimits,
    /// Which attributes replies carry. Default [`Detail::Lean`]: a request
    /// from an asyncmcp client (one that names its reply address in
    /// `ReplyTo`) gets replies with only what that client reads: `ClientId`,
    /// the `RequestId` and `Sequence` numbering (no `Sequence` on a response
    /// with nothing before it), and `SessionId` only on the `initialize`
    /// response (or when the request had no `ClientId`). Replies to other
    /// clients (Python asyncmcp's name no `ReplyTo`) and to webhooks, whose
    /// attributes become headers, get every attribute docs/wire.md
    /// defines, as does every reply with [`Detail::Full`] (for an SNS
    /// filter policy or other tooling that reads them).
    pub attribute_detail: Detail,
}

/// SQS's cap on a message's total visibility, from its receipt.
pub const DEFAULT_VISIBILITY_CEILING: Duration = Duration::from_secs(12 * 60 * 60);

/// The server's own dead-lettering: a request delivered more than
/// `max_receive_count` times (every earlier attempt ended without an answer:
/// the process died, or the reply could not be sent) is sent to `address`
/// with a `DeadLetterReason` and its `ReceiveCount` instead of being run
/// again, and removed from the request queue. A final response that cannot
/// be sent on the last allowed attempt dead-letters the request too.
///
/// Give the request queue no SQS redrive policy, or one with a higher
/// `maxReceiveCount` as a backstop: SQS moves a message before the server
/// sees its extra delivery otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead-letter queue (or topic).
    pub address: String,
    /// Deliveries allowed before a request is dead-lettered (at least 1).
    pub max_receive_count: u32,
}

impl ServerConfig {
    fn new(request_queue: &QueueInfo) -> Self {
        Self {
            pollers: 4,
            max_in_flight: 64,
            wait: Duration::from_secs(20),
            request_timeout: None,
            shutdown_grace: Duration::from_secs(30),
            session_keys: SessionKeys::random(),
            reply_policy: ReplyPolicy::same_account_as_in(
                &request_queue.address,
                request_queue.region.as_deref(),
            ),
            shared_reply_address: None,
            replay_window: Duration::from_secs(300),
            replay_budget: 64 << 20,
            dead_letter: None,
            signing: None,
            signature_max_age: Some(Duration::from_secs(15 * 60)),
            visibility_ceiling: DEFAULT_VISIBILITY_CEILING,
            tasks: None,
            limits: ToolLimits::default(),
            attribute_detail: Detail::Lean,
        }
    }
}

/// An rmcp server that takes its requests from a queue.
///
/// ```no_run
/// # use asyncmcp::{MemoryBroker, QueueServer};
/// # use asyncmcp::queue::memory::MemoryQueueOptions;
/// # #[derive(Clone, Default)] struct MyServer;
/// # impl rmcp::ServerHandler for MyServer {}
/// # async fn demo() {
/// let broker = MemoryBroker::new();
/// let requests = broker.create_queue("requests", MemoryQueueOptions::default());
/// let server = QueueServer::builder(broker.inbox(&requests).unwrap(), broker.outbox())
///     .max_in_flight(32)
///     .build(MyServer::default);
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// server.run(shutdown).await;
/// # }
/// ```
pub struct QueueServer<F> {
    shared: Arc<dispatch::Shared<F>>,
}

/// Shows the configuration and the request queue's address; the service
/// factory is not shown.
impl<F> fmt::Debug for QueueServer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueServer")
            .field("queue", &self.shared.inbox.info().address)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Waits for the handlers `tracker` holds to finish by `deadline`; past it,
/// abandons them (they release their requests) and waits for that.
async fn drain(tracker: &TaskTracker, deadline: tokio::time::Instant, abandon: &CancellationToken) {
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "grace period over: releasing unfinished requests"
        );
        abandon.cancel();
        tracker.wait().await;
    }
}

impl<F: ServiceFactory> QueueServer<F> {
    /// Serves until `shutdown` is cancelled, then stops receiving, lets
    /// in-flight requests finish within the grace period and releases the
    /// rest (visibility 0) so that another replica picks them up at once.
    /// Long polls in progress are let finish (see
    /// [`ServerConfig::shutdown_grace`]).
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let config = shared.config.clone();
        let tracker = TaskTracker::new();
        let limiter = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
        let stop_polling = shutdown.child_token();
        tracing::info!(
            queue = %shared.inbox.info().address,
            pollers = config.pollers,
            max_in_flight = config.max_in_flight,
            "queue server started"
        );
        let mut pollers = tokio::task::JoinSet::new();
        let scale = Arc::new(poller::Scale::new(config.pollers));
        for index in 0..config.pollers {
            pollers.spawn(poller::run(
                index,
                scale.clone(),
                shared.clone(),
                limiter.clone(),
                tracker.clone(),
                stop_polling.clone(),
            ));
        }
        shutdown.cancelled().await;
        // Pollers spawn nothing once stopped, so the tracker can close now;
        // the grace period runs from the shutdown signal, beside the pollers'
        // last long polls.
        tracker.close();
        let deadline = tokio::time::Instant::now() + config.shutdown_grace;
        tracing::info!(
            in_flight = tracker.len(),
            "shutting down: stopped receiving, draining"
        );
        let handlers_done = drain(&tracker, deadline, &shared.abandon);
        let pollers_done = async { while pollers.join_next().await.is_some() {} };
        tokio::join!(handlers_done, pollers_done);
        // A poller past its stop check when the signal came may have started
        // a handler after the drain above saw none running: drain again, now
        // that no poller is left to start one.
        drain(&tracker, deadline, &shared.abandon).await;
        tracing::info!("queue server stopped");
    }

    /// Runs the server on a new task; cancel `shutdown` and await the handle
    /// to stop it.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBroker;
    use crate::queue::memory::MemoryQueueOptions;

    #[derive(Clone)]
    struct Handler;
    impl rmcp::ServerHandler for Handler {}

    #[tokio::test]
    async fn a_server_and_its_builder_show_their_queue_and_config() {
        let broker = MemoryBroker::new();
        let requests = broker.create_queue("requests", MemoryQueueOptions::default());
        let builder =
            QueueServer::builder(broker.inbox(&requests).expect("inbox"), broker.outbox())
                .max_in_flight(7);
        for shown in [
            format!("{builder:?}"),
            format!("{:?}", builder.build(|| Handler)),
        ] {
            assert!(shown.contains(&format!("queue: {requests:?}")), "{shown}");
            assert!(shown.contains("max_in_flight: 7"), "{shown}");
        }
    }
}

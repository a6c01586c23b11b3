//! The webhook inbox: requests taken over HTTP, wire-compatible with Python
//! asyncmcp 0.2.1's webhook transport.
//!
//! [`WebhookInbox::router`] is an axum [`Router`] (default `POST|DELETE
//! /mcp/request`) that turns each POSTed JSON-RPC message into a
//! [`Delivery`] for a [`QueueServer`](crate::QueueServer), which takes the
//! inbox like any other: the server's sealed sessions, reply allow-list,
//! replay cache, deadlines and bounded in-flight all apply unchanged. The
//! replies go out through the server's outbox, a
//! [`WebhookOutbox`](super::WebhookOutbox) (or a
//! [`RoutingOutbox`](crate::queue::RoutingOutbox) of SQS and webhooks), to
//! the `_meta.webhookUrl` the client named.
//!
//! # What a delivery is here
//!
//! An accepted POST is held in a private in-process queue with SQS
//! semantics (the [`memory`](crate::queue::memory) broker): `ack` forgets
//! it, `release` makes it visible again at once, `extend` keeps it hidden,
//! and one whose visibility lapses (its handler stalled, its reply failed
//! for a passing reason) is delivered again, with its receive count raised,
//! so the server's dead-lettering applies. Unlike SQS, it lives only in this
//! process: a request accepted (answered `200`) and not yet answered is lost
//! if the process dies. The queue is bounded: a POST that finds
//! [`capacity`](WebhookInboxBuilder::capacity) requests queued or in flight
//! is answered `503` with `Retry-After`, never queued.
//!
//! # Session ids
//!
//! Our session ids are sealed (see [`session`](crate::wire::session)): one
//! exists only once the `initialize` has run and its negotiated version is
//! known. So the POST of an `initialize` is answered once its reply has been
//! sent: the server's outbox is wrapped in [`WebhookInbox::tap`], which
//! hands the inbox the session id the `InitializeResult` carries, and the
//! POST gets `200 {"status":"session_created","session_id":…}` with an
//! `X-Session-ID` header, as Python's server gives. If the `initialize` is
//! answered with an error the POST gets `200 {"status":"received"}`; if no
//! reply is sent within [`init_wait`](WebhookInboxBuilder::init_wait),
//! `202 {"status":"accepted"}` (the reply may still come). Python's client
//! reads the session id from the `X-Session-ID` of the `InitializeResult`
//! POSTed to its webhook, so either way it works.
//!
//! # What a forged header can do
//!
//! Nothing here authenticates a caller unless a
//! [`WebhookVerifier`] is set
//! ([`verifier`](WebhookInboxBuilder::verifier): Standard Webhooks
//! signatures from a client holding the secret). Without one:
//!
//! * `X-Client-ID` is a label: it keys cancellation and logs, and a forged
//!   one can at most cancel a request of that client whose JSON-RPC id it
//!   guesses (as on a shared SQS queue).
//! * `X-Session-ID` must be a session the server sealed: a made-up or
//!   altered one is refused by the server. A stolen one is as good as the
//!   original (it is a bearer token): its replies go to the webhook URL
//!   sealed in it, not to the thief, unless the thief names another URL.
//! * `_meta.webhookUrl` (or a session's sealed URL) is where replies go: the
//!   server checks it against its reply allow-list
//!   ([`ReplyPolicy`](crate::server::ReplyPolicy)), and the webhook outbox
//!   against its own prefixes and the address it resolves to (no loopback,
//!   private, link-local or metadata addresses unless allowed; no
//!   redirects). A forged URL inside the allow-list gets the replies to the
//!   forger's own requests, nothing more.
//! * `DELETE` with an `X-Session-ID` ends that session at this process:
//!   later POSTs presenting it are answered `404`. A sealed session carries
//!   no server state, so another replica still accepts it; rotate the
//!   session keys to end sessions everywhere.

mod http;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;

use super::WebhookVerifier;
use crate::queue::memory::{MemoryBroker, MemoryInbox, MemoryOutbox, MemoryQueueOptions};
use crate::queue::{
    DEFAULT_MAX_MESSAGE_SIZE, Delivery, Inbox, Outbox, QueueError, QueueInfo, QueueMessage, Receipt,
};
use crate::wire::attr;

/// The path Python asyncmcp's webhook server takes requests on.
pub const DEFAULT_PATH: &str = "/mcp/request";

/// The most requests queued or in flight by default.
pub const DEFAULT_CAPACITY: usize = 256;

/// How many ended sessions a process remembers by default.
const DEFAULT_TERMINATED: usize = 10_000;

/// Builds a [`WebhookInbox`]; see [`WebhookInbox::builder`].
#[derive(Debug)]
pub struct WebhookInboxBuilder {
    path: String,
    max_body: usize,
    capacity: usize,
    visibility_timeout: Duration,
    init_wait: Duration,
    retry_after: Duration,
    verifier: Option<WebhookVerifier>,
}

impl WebhookInboxBuilder {
    /// Takes requests on `path` (default [`DEFAULT_PATH`]).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Refuses bodies larger than `bytes` with `413` (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes.max(1);
        self
    }

    /// Holds at most `requests` queued or in flight (default
    /// [`DEFAULT_CAPACITY`]); past it POSTs are answered `503`.
    pub fn capacity(mut self, requests: usize) -> Self {
        self.capacity = requests.max(1);
        self
    }

    /// How long a delivery stays hidden before it is delivered again unless
    /// acked or extended (default 30 s).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// How long the POST of an `initialize` waits for its reply to be sent,
    /// to answer with the session id (default 30 s).
    pub fn init_wait(mut self, wait: Duration) -> Self {
        self.init_wait = wait;
        self
    }

    /// The `Retry-After` of a `503` when full (default 1 s, whole seconds).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Refuses (`401`) requests without a valid Standard Webhooks signature
    /// under `verifier`'s secret, and replays of a `webhook-id`.
    pub fn verifier(mut self, verifier: WebhookVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The inbox.
    pub fn build(self) -> WebhookInbox {
        let broker = MemoryBroker::new();
        let name = format!("webhook-inbox-{}", uuid::Uuid::new_v4().simple());
        let options = MemoryQueueOptions::default()
            .with_visibility_timeout(self.visibility_timeout)
            // The body, plus its attributes: a few bounded headers and the
            // webhook URL, itself part of the body.
            .with_max_message_size(self.max_body.saturating_mul(2).saturating_add(64 * 1024));
        let queue = broker.create_queue(&name, options);
        // `create_queue` just made it: the inbox of it exists.
        let inbox = match broker.inbox(&queue) {
            Ok(inbox) => inbox,
            Err(error) => unreachable!("a queue just created has an inbox: {error}"),
        };
        // An address no outbox sends to: the server's default reply policy
        // (queues beside the request queue) then allows nothing by itself.
        let info = QueueInfo::new(
            format!("webhook-inbox:{}", self.path),
            self.visibility_timeout,
            self.max_body,
        );
        WebhookInbox {
            shared: Arc::new(Shared {
                info,
                outbox: broker.outbox(),
                broker,
                queue,
                inbox,
                path: self.path,
                max_body: self.max_body,
                capacity: self.capacity,
                init_wait: self.init_wait,
                retry_after: self.retry_after,
                verifier: self.verifier,
                admit: tokio::sync::Mutex::new(()),
                pending: Mutex::default(),
                terminated: Mutex::default(),
            }),
        }
    }
}

/// An [`Inbox`] fed by HTTP requests; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct WebhookInbox {
    shared: Arc<Shared>,
}

/// A pending `initialize`: who sent it, its JSON-RPC id as text, and its
/// webhook URL. With the URL in the key, another caller reusing the client
/// and request ids learns a session id only for a webhook it named itself,
/// one it could have had by its own `initialize`.
type InitKey = (String, String, String);

/// Sessions ended by `DELETE`, oldest first.
#[derive(Debug, Default)]
struct Terminated {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

#[derive(Debug)]
struct Shared {
    info: QueueInfo,
    broker: MemoryBroker,
    queue: String,
    inbox: MemoryInbox,
    outbox: MemoryOutbox,
    path: String,
    max_body: usize,
    capacity: usize,
    init_wait: Duration,
    retry_after: Duration,
    verifier: Option<WebhookVerifier>,
    /// Held while checking the bound and queueing, so the bound is exact.
    admit: tokio::sync::Mutex<()>,
    /// `initialize` POSTs waiting for their reply's session id.
    pending: Mutex<HashMap<InitKey, Vec<oneshot::Sender<Option<String>>>>>,
    terminated: Mutex<Terminated>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a POST was not queued.
#[derive(Debug)]
enum Admit {
    Full,
    Failed(QueueError),
}

impl Shared {
    /// Queues `message` unless `capacity` requests are queued or in flight.
    async fn admit(&self, message: QueueMessage) -> Result<(), Admit> {
        let _admitting = self.admit.lock().await;
        let (visible, in_flight) = self.broker.depth(&self.queue);
        if visible + in_flight >= self.capacity {
            return Err(Admit::Full);
        }
        self.outbox
            .send(&self.queue, message)
            .await
            .map_err(Admit::Failed)
    }

    /// Registers an `initialize` POST waiting for its session id.
    fn expect_session(&self, key: InitKey) -> oneshot::Receiver<Option<String>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).entry(key).or_default().push(tx);
        rx
    }

    /// Forgets waiters of `key` that gave up (their POST ended).
    fn forget_waiters(&self, key: &InitKey) {
        let mut pending = lock(&self.pending);
        if let Some(waiters) = pending.get_mut(key) {
            waiters.retain(|tx| !tx.is_closed());
            if waiters.is_empty() {
                pending.remove(key);
            }
        }
    }

    /// Called for every message the server sent: hands an `initialize`'s
    /// waiters the session id of its final reply (`None` for an error).
    fn sent(&self, address: &str, message: &QueueMessage) {
        let (Some(client), Some(request)) = (
            message.attribute(attr::CLIENT_ID),
            message.attribute(attr::REQUEST_ID),
        ) else {
            return;
        };
        let key = (client.to_owned(), request.to_owned(), address.to_owned());
        let mut pending = lock(&self.pending);
        if !pending.contains_key(&key) {
            return;
        }
        let Ok(body) = serde_json::from_str::<Value>(&message.body) else {
            return;
        };
        if body.get("method").is_some() {
            // A notification sent for the request; its final reply follows.
            return;
        }
        let session = body
            .get("result")
            .and(message.attribute(attr::SESSION_ID))
            .map(str::to_owned);
        for tx in pending.remove(&key).into_iter().flatten() {
            // A waiter that gave up is gone; nothing to tell it.
            let _ = tx.send(session.clone());
        }
    }

    fn terminate(&self, session: String) {
        let mut terminated = lock(&self.terminated);
        if !terminated.ids.insert(session.clone()) {
            return;
        }
        terminated.order.push_back(session);
        while terminated.order.len() > DEFAULT_TERMINATED {
            if let Some(oldest) = terminated.order.pop_front() {
                terminated.ids.remove(&oldest);
            }
        }
    }

    fn is_terminated(&self, session: &str) -> bool {
        lock(&self.terminated).ids.contains(session)
    }
}

impl WebhookInbox {
    /// A builder with the defaults: path [`DEFAULT_PATH`], 1 MiB bodies,
    /// [`DEFAULT_CAPACITY`] requests, 30 s visibility, no signatures.
    pub fn builder() -> WebhookInboxBuilder {
        WebhookInboxBuilder {
            path: DEFAULT_PATH.to_owned(),
            max_body: DEFAULT_MAX_MESSAGE_SIZE,
            capacity: DEFAULT_CAPACITY,
            visibility_timeout: Duration::from_secs(30),
            init_wait: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
            verifier: None,
        }
    }

    /// The HTTP routes (`POST` and `DELETE` on the path) feeding this inbox.
    /// Serve it with [`serve`](super::serve) (bounded connections and read
    /// timeouts, for the open internet), or behind a front of your own;
    /// stop serving before the server drains.
    pub fn router(&self) -> Router {
        http::router(self.shared.clone())
    }

    /// Wraps the server's `outbox` so that an `initialize`'s POST learns the
    /// session id its reply carries (see the [module docs](self)). Give the
    /// server the wrapped outbox.
    pub fn tap(&self, outbox: Arc<dyn Outbox>) -> SessionTap {
        SessionTap {
            outbox,
            shared: self.shared.clone(),
        }
    }
}

#[async_trait]
impl Inbox for WebhookInbox {
    fn info(&self) -> &QueueInfo {
        &self.shared.info
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.shared.inbox.receive(max, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.shared.inbox.ack(receipt).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.shared.inbox.extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.shared.inbox.release(receipt).await
    }
}

/// The server's outbox, telling a [`WebhookInbox`] the session ids its
/// `initialize` replies carry; see [`WebhookInbox::tap`].
#[derive(Clone)]
pub struct SessionTap {
    outbox: Arc<dyn Outbox>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTap").finish_non_exhaustive()
    }
}

#[async_trait]
impl Outbox for SessionTap {
    fn accepts(&self, address: &str) -> bool {
        self.outbox.accepts(address)
    }
    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        // Only while an `initialize` POST waits is a copy worth making.
        let seen = (!lock(&self.shared.pending).is_empty()).then(|| message.clone());
        self.outbox.send(address, message).await?;
        if let Some(seen) = seen {
            self.shared.sent(address, &seen);
        }
        Ok(())
    }
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.outbox.max_message_size(address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str, session: Option<&str>) -> QueueMessage {
        let mut message = QueueMessage::new(body)
            .with_string(attr::CLIENT_ID, "c")
            .with_string(attr::REQUEST_ID, "0");
        if let Some(session) = session {
            message = message.with_string(attr::SESSION_ID, session);
        }
        message
    }

    fn key(url: &str) -> InitKey {
        ("c".to_owned(), "0".to_owned(), url.to_owned())
    }

    #[tokio::test]
    async fn an_initialize_waiter_learns_only_its_own_webhooks_session() {
        let inbox = WebhookInbox::builder().build();
        let shared = &inbox.shared;
        let mut mine = shared.expect_session(key("https://a/hook"));
        let result = r#"{"jsonrpc":"2.0","id":0,"result":{}}"#;
        // Another webhook's reply, and a notification: not the answer.
        shared.sent("https://b/hook", &reply(result, Some("other")));
        shared.sent(
            "https://a/hook",
            &reply(
                r#"{"jsonrpc":"2.0","method":"notifications/message"}"#,
                None,
            ),
        );
        assert!(mine.try_recv().is_err());
        shared.sent("https://a/hook", &reply(result, Some("sealed")));
        assert_eq!(mine.await.expect("told"), Some("sealed".to_owned()));
        assert!(lock(&shared.pending).is_empty());

        let error = r#"{"jsonrpc":"2.0","id":0,"error":{"code":-1,"message":"no"}}"#;
        let refused = shared.expect_session(key("https://a/hook"));
        shared.sent("https://a/hook", &reply(error, Some("client's own")));
        assert_eq!(refused.await.expect("told"), None);

        drop(shared.expect_session(key("https://a/hook")));
        shared.forget_waiters(&key("https://a/hook"));
        assert!(lock(&shared.pending).is_empty());
    }

    #[tokio::test]
    async fn a_released_delivery_comes_again_and_an_acked_one_frees_its_place() {
        let inbox = WebhookInbox::builder().capacity(1).build();
        let shared = &inbox.shared;
        shared.admit(QueueMessage::new("{}")).await.expect("queued");
        assert!(matches!(
            shared.admit(QueueMessage::new("{}")).await,
            Err(Admit::Full)
        ));
        let wait = Duration::from_millis(10);
        let first = inbox.receive(10, wait).await.expect("received");
        assert_eq!(first.len(), 1);
        inbox.release(&first[0].receipt).await.expect("released");
        let again = inbox.receive(10, wait).await.expect("received");
        assert_eq!(again[0].receive_count, 2);
        inbox.ack(&again[0].receipt).await.expect("acked");
        assert!(inbox.receive(10, wait).await.expect("received").is_empty());
        shared
            .admit(QueueMessage::new("{}"))
            .await
            .expect("room again");
    }
}

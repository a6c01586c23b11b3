//! [`QueueClientTransport`]: an rmcp client transport over queues.
//!
//! Requests go to the server's request queue (or to an SNS topic its queue is
//! subscribed to); replies come back on the client's own reply queue (sent
//! there directly, or through a reply topic), which a background poller
//! drains into [`receive`](rmcp::transport::Transport::receive). Every
//! message carries the client's reply address (`ReplyTo`) and id
//! (`ClientId`); a legacy `initialize` also names the reply address under
//! both keys Python asyncmcp servers read, so the same client works against
//! those.
//!
//! A transport is made by its [builder](QueueClientTransport::builder):
//! settings, then the broker, with [`build`](QueueClientBuilder::build) (any
//! inbox and outbox), [`memory`](QueueClientBuilder::memory),
//! `connect_sqs` (feature `sqs`) or `connect_sns_sqs` (feature `sns`); the
//! last two provision a reply queue (and topic or subscription) on connect
//! and remove it on close. `QueueClientTransport::sqs` and
//! `QueueClientTransport::sns_sqs` (features `sqs`, `sns`) do it in one call
//! with the AWS settings of the environment.
//!
//! Signing and send retry are [layers](crate::queue::layer) of the inbox and
//! outbox, stacked by the builder from its settings.
//!
//! [`batch`] has [`Batch`](batch::Batch), for pipelines of many calls that
//! collect answers as they come and survive restarts.
//!
//! [`webhook`] (feature `webhook`) has the HTTP counterpart,
//! [`WebhookClientTransport`]: requests POSTed to a server, replies received
//! on an embedded HTTP receiver.
//!
//! ```no_run
//! # use asyncmcp::{MemoryBroker, QueueClientTransport};
//! # use rmcp::ServiceExt;
//! # async fn demo(broker: MemoryBroker) -> anyhow::Result<()> {
//! let transport = QueueClientTransport::memory(&broker, "memory://requests")?;
//! let client = ().serve(transport).await?;
//! let tools = client.list_all_tools().await?;
//! client.cancel().await?;
//! # Ok(()) }
//! ```

pub mod batch;
mod builder;
mod order;
mod poller;
#[cfg(feature = "sns")]
mod sns;
#[cfg(feature = "sqs")]
mod sqs;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use builder::{QueueClientBuilder, QueueClientConfig};
#[cfg(feature = "sns")]
pub use sns::SnsReplies;
#[cfg(feature = "webhook")]
pub use webhook::{
    WebhookClientBuilder, WebhookClientConfig, WebhookClientError, WebhookClientHandle,
    WebhookClientTransport,
};

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::order::{Received, Reorder};
use crate::queue::memory::MemoryBroker;
use crate::queue::{Inbox, Outbox, QueueError, QueueMessage};
use crate::wire::{self, Detail, Headers};

/// Errors of the client transport.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A message could not be encoded.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

/// How long closing waits for the deletes of handled replies.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Cleanup run on close, e.g. deleting a reply queue created on connect.
pub type OnClose = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// What the sending side and the poller share.
struct Shared {
    outbox: Arc<dyn Outbox>,
    server_address: String,
    reply_address: String,
    reply_queue: String,
    client_id: String,
    /// The session id the server issued on `initialize` (legacy versions).
    session_id: Mutex<Option<String>>,
    /// Whether unsigned replies are accepted (no signatures required): then
    /// a reply whose offloaded payload is gone fails its call by its
    /// `RequestId` (see `poller.rs`).
    #[cfg_attr(not(feature = "offload"), allow(dead_code))]
    unsigned_trusted: bool,
    /// Which attributes requests carry.
    attribute_detail: Detail,
    /// Whether requests carry their `RequestId` in lean detail too
    /// ([`QueueClientConfig::request_ids`]).
    request_ids: bool,
}

impl Shared {
    fn session_id(&self) -> Option<String> {
        self.session_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `message` to the server. The outbox retries what fails for a
    /// passing reason (see [`QueueClientConfig::send_retry`]), resending
    /// the same message: a FIFO queue drops a retry whose first attempt
    /// arrived, by its deduplication id.
    async fn send(&self, message: ClientJsonRpcMessage) -> Result<(), ClientError> {
        let encoded = self.encode(&message)?;
        Ok(self.outbox.send(&self.server_address, encoded).await?)
    }

    /// The queue message for `message`; for a legacy `initialize`, with the
    /// reply address in its parameters. (Signing is the outbox's.)
    fn encode(&self, message: &ClientJsonRpcMessage) -> Result<QueueMessage, ClientError> {
        let request_id = match message {
            ClientJsonRpcMessage::Request(request) if self.request_ids => {
                Some(wire::request_id_text(&request.id))
            }
            _ => None,
        };
        let headers = Headers {
            detail: self.attribute_detail,
            session_id: self.session_id(),
            client_id: Some(self.client_id.clone()),
            reply_to: Some(self.reply_address.clone()),
            request_id,
            ..Headers::default()
        };
        let encoded = if wire::names_initialize(message) {
            let mut value = serde_json::to_value(message).map_err(wire::WireError::from)?;
            wire::add_initialize_reply_to(&mut value, &self.reply_address);
            wire::encode_value(&value, &headers)?
        } else {
            wire::encode_message(message, &headers)?
        };
        // On a FIFO queue: a group per request, so that a running call, which
        // holds its group until it is answered (late ack), blocks neither the
        // client's other calls nor a cancellation of itself. Made only for a
        // FIFO queue: other destinations take no group.
        Ok(if crate::queue::is_fifo(&self.server_address) {
            encoded.for_destination(&self.server_address, &fifo_group(&self.client_id, message))
        } else {
            encoded
        })
    }
}

/// An rmcp client transport over queues. See the [module docs](self).
pub struct QueueClientTransport {
    shared: Arc<Shared>,
    incoming: mpsc::Receiver<Received>,
    order: Reorder,
    stop: CancellationToken,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    /// The deletes of handled replies, which closing waits for.
    acks: TaskTracker,
    on_close: Option<OnClose>,
}

/// Shows who the transport is and where it sends and receives.
impl std::fmt::Debug for QueueClientTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueClientTransport")
            .field("client_id", &self.shared.client_id)
            .field("server_address", &self.shared.server_address)
            .field("reply_address", &self.shared.reply_address)
            .field("reply_queue", &self.shared.reply_queue)
            .field("session_id", &self.shared.session_id())
            .field("pollers", &self.pollers.len())
            .finish_non_exhaustive()
    }
}

impl QueueClientTransport {
    /// Starts building a client of the server at `server_address` (its
    /// request queue, or the SNS topic that queue is subscribed to).
    pub fn builder(server_address: impl Into<String>) -> QueueClientBuilder {
        QueueClientBuilder::new(server_address.into())
    }

    /// A client on an in-process broker, with a reply queue of its own that
    /// is created now and deleted on close; the defaults otherwise.
    pub fn memory(broker: &MemoryBroker, server_address: &str) -> Result<Self, ClientError> {
        Self::builder(server_address).memory(broker)
    }

    /// Puts a transport together from the layered inbox and outbox the
    /// builder made, and starts polling.
    fn assemble(
        inbox: Arc<dyn Inbox>,
        outbox: Arc<dyn Outbox>,
        config: QueueClientConfig,
        client_id: String,
        stop: CancellationToken,
    ) -> Self {
        let shared = Arc::new(Shared {
            outbox,
            server_address: config.server_address.clone(),
            reply_address: config
                .reply_address
                .clone()
                .unwrap_or_else(|| inbox.info().address.clone()),
            reply_queue: inbox.info().address.clone(),
            client_id,
            session_id: Mutex::new(None),
            unsigned_trusted: !config
                .signing
                .as_ref()
                .is_some_and(|signing| signing.required),
            attribute_detail: config.attribute_detail,
            request_ids: config.request_ids,
        });
        let (sender, incoming) = mpsc::channel(256);
        let acks = TaskTracker::new();
        let pollers = (0..config.pollers.max(1))
            .map(|_| {
                tokio::spawn(poller::run(
                    inbox.clone(),
                    shared.clone(),
                    sender.clone(),
                    poller::PollSettings {
                        wait: config.wait,
                        orphan_after: config.orphan_after,
                        acks: acks.clone(),
                    },
                    stop.clone(),
                ))
            })
            .collect();
        Self {
            shared,
            incoming,
            order: Reorder::new(config.order_wait),
            stop,
            pollers,
            acks,
            on_close: None,
        }
    }

    /// Runs `cleanup` when the transport closes.
    pub fn on_close(mut self, cleanup: OnClose) -> Self {
        self.on_close = Some(cleanup);
        self
    }

    /// This connection's id (`ClientId`): the configured
    /// [`client_id`](QueueClientConfig::client_id) and a random suffix.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The address replies are sent to (the reply queue, or the topic it is
    /// subscribed to).
    pub fn reply_address(&self) -> &str {
        &self.shared.reply_address
    }

    /// The queue replies are received on (the same as
    /// [`reply_address`](Self::reply_address) unless replies come through a
    /// topic).
    pub fn reply_queue(&self) -> &str {
        &self.shared.reply_queue
    }

    /// The session id the server issued, once `initialize` has been answered.
    pub fn session_id(&self) -> Option<String> {
        self.shared.session_id()
    }
}

impl Transport<RoleClient> for QueueClientTransport {
    type Error = ClientError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.send(item).await }
    }

    /// Cancel-safe: a message leaves the channel and enters the reordering
    /// buffer in one step, with no await between.
    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        self.order.next_from(&mut self.incoming).await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.stop.cancel();
        for poller in self.pollers.drain(..) {
            if self.on_close.is_some() {
                // The reply queue is ours alone and about to be deleted:
                // nothing of anyone else's can be caught in the poll.
                poller.abort();
            }
            let _ = poller.await;
        }
        // Replies handled but not yet deleted: deleting the reply queue under
        // them fails (with a warning), and on a queue that stays they would be
        // delivered again, to another client as an orphan.
        self.acks.close();
        if tokio::time::timeout(ACK_WAIT, self.acks.wait())
            .await
            .is_err()
        {
            tracing::debug!("deletes of handled replies still running at close");
        }
        if let Some(cleanup) = self.on_close.take() {
            cleanup().await;
        }
        Ok(())
    }
}

impl Drop for QueueClientTransport {
    fn drop(&mut self) {
        self.stop.cancel();
        // A poller stops once its poll in progress ends (at most `wait`) and
        // releases what that poll returned; it runs on detached meanwhile, so
        // dropping does not block. Aborted instead, it would leave whatever
        // the abandoned receive took (perhaps other clients' replies on a
        // shared queue) hidden for the visibility timeout. A reply queue
        // deleted on close is ours alone: nothing to give back.
        if self.on_close.is_some() {
            for poller in &self.pollers {
                poller.abort();
            }
        }
        if let Some(cleanup) = self.on_close.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(cleanup());
        }
    }
}

/// The FIFO message group of `message` sent by connection `client_id`:
/// `<client_id>.<request id>` for a request (a resend of it keeps its
/// group), a group of its own for anything else (a cancellation must not
/// wait behind the call it cancels). Group ids are at most 128 printable
/// ASCII characters: a request id that would not fit is hashed.
fn fifo_group(client_id: &str, message: &ClientJsonRpcMessage) -> String {
    const MAX: usize = 128;
    let ClientJsonRpcMessage::Request(request) = message else {
        return format!("{client_id}.{}", uuid::Uuid::new_v4().simple());
    };
    let id = wire::request_id_text(&request.id);
    let group = format!("{client_id}.{id}");
    if group.len() <= MAX && group.bytes().all(|b| b.is_ascii_graphic()) {
        return group;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = client_id
        .chars()
        .filter(char::is_ascii_graphic)
        .take(MAX - hex.len() - 2)
        .collect();
    format!("{prefix}.#{hex}")
}

/// The `ClientId` of a new connection of the client named `name`.
fn connection_id(name: &str) -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{name}.{}", &nonce[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use tower_layer::Layer;

    /// Refuses the first send for a passing reason, then accepts; keeps what
    /// each attempt carried.
    #[derive(Default)]
    struct FlakyOutbox {
        attempts: Mutex<Vec<QueueMessage>>,
    }

    #[async_trait]
    impl Outbox for FlakyOutbox {
        fn accepts(&self, _: &str) -> bool {
            true
        }
        async fn send(&self, _: &str, message: QueueMessage) -> Result<(), QueueError> {
            let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
            attempts.push(message);
            if attempts.len() == 1 {
                return Err(QueueError::service("throttled"));
            }
            Ok(())
        }
        async fn max_message_size(&self, _: &str) -> Result<usize, QueueError> {
            Ok(crate::queue::DEFAULT_MAX_MESSAGE_SIZE)
        }
    }

    /// Never accepts: the broker cannot be reached.
    struct DownOutbox;

    #[async_trait]
    impl Outbox for DownOutbox {
        fn accepts(&self, _: &str) -> bool {
            true
        }
        async fn send(&self, _: &str, _: QueueMessage) -> Result<(), QueueError> {
            Err(QueueError::service("unreachable"))
        }
        async fn max_message_size(&self, _: &str) -> Result<usize, QueueError> {
            Ok(crate::queue::DEFAULT_MAX_MESSAGE_SIZE)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_transport_ends_a_send_retry() {
        let broker = MemoryBroker::new();
        let replies = broker.create_queue("replies", Default::default());
        let mut transport = QueueClientTransport::builder("memory://requests")
            .wait(std::time::Duration::from_secs(1))
            .send_retry(std::time::Duration::from_secs(3600))
            .build(broker.inbox(&replies).expect("queue exists"), DownOutbox);
        let ping: ClientJsonRpcMessage =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        let sending = tokio::spawn(transport.send(ping));
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        assert!(!sending.is_finished(), "still retrying after 10 s");
        let closed_at = tokio::time::Instant::now();
        transport.close().await.expect("closed");
        let sent = sending.await.expect("not panicked");
        assert!(
            matches!(sent, Err(ClientError::Queue(QueueError::Closed))),
            "{sent:?}"
        );
        // Within the reply poll it waits for, not the hour of `send_retry`.
        assert!(closed_at.elapsed() <= std::time::Duration::from_secs(2));
    }

    /// A memory inbox whose deletes take 200 ms, and say when they are done.
    struct SlowAckInbox {
        inner: crate::queue::memory::MemoryInbox,
        acked: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait]
    impl Inbox for SlowAckInbox {
        fn info(&self) -> &crate::queue::QueueInfo {
            self.inner.info()
        }
        async fn receive(
            &self,
            max: usize,
            wait: std::time::Duration,
        ) -> Result<Vec<crate::queue::Delivery>, QueueError> {
            self.inner.receive(max, wait).await
        }
        async fn ack(&self, receipt: &crate::queue::Receipt) -> Result<(), QueueError> {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let acked = self.inner.ack(receipt).await;
            self.acked.store(true, std::sync::atomic::Ordering::SeqCst);
            acked
        }
        async fn extend(
            &self,
            receipt: &crate::queue::Receipt,
            visibility: std::time::Duration,
        ) -> Result<(), QueueError> {
            self.inner.extend(receipt, visibility).await
        }
        async fn release(&self, receipt: &crate::queue::Receipt) -> Result<(), QueueError> {
            self.inner.release(receipt).await
        }
    }

    #[tokio::test]
    async fn closing_waits_for_the_deletes_of_handled_replies_before_cleanup() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let broker = MemoryBroker::new();
        let replies = broker.create_queue("replies", Default::default());
        let acked = Arc::new(AtomicBool::new(false));
        let acked_before_cleanup = Arc::new(AtomicBool::new(false));
        let inbox = SlowAckInbox {
            inner: broker.inbox(&replies).expect("queue exists"),
            acked: acked.clone(),
        };
        let (seen, cleanup_saw) = (acked.clone(), acked_before_cleanup.clone());
        let mut transport = QueueClientTransport::builder("memory://requests")
            .wait(std::time::Duration::from_millis(100))
            .build(inbox, broker.outbox())
            .on_close(Box::new(move || {
                Box::pin(
                    async move { cleanup_saw.store(seen.load(Ordering::SeqCst), Ordering::SeqCst) },
                )
            }));
        let reply = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {}});
        let message = wire::encode(&reply, &Headers::default()).expect("encoded");
        broker.outbox().send(&replies, message).await.expect("sent");
        assert!(transport.receive().await.is_some(), "the reply came");
        transport.close().await.expect("closed");
        assert!(
            acked_before_cleanup.load(Ordering::SeqCst),
            "the reply was deleted before the cleanup (which deletes the queue) ran"
        );
    }

    #[test]
    fn fifo_groups_are_per_request_and_always_valid() {
        let message = |body: &str| -> ClientJsonRpcMessage { serde_json::from_str(body).unwrap() };
        let call = message(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#);
        assert_eq!(fifo_group("c-1", &call), "c-1.7");
        assert_eq!(
            fifo_group("c-1", &call),
            fifo_group("c-1", &call),
            "a resend keeps it"
        );
        let cancel = message(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#,
        );
        let (first, second) = (fifo_group("c-1", &cancel), fifo_group("c-1", &cancel));
        assert_ne!(first, "c-1.7", "a cancel is not behind its call");
        assert_ne!(first, second);
        let odd = message(&format!(
            r#"{{"jsonrpc":"2.0","id":"{} ü","method":"ping"}}"#,
            "x".repeat(200)
        ));
        let group = fifo_group(&"c".repeat(200), &odd);
        assert!(
            group.len() <= 128 && group.bytes().all(|b| b.is_ascii_graphic()),
            "{group}"
        );
    }

    #[test]
    fn requests_carry_what_the_detail_and_layers_call_for() {
        let shared = |detail: Detail, request_ids: bool| Shared {
            outbox: Arc::new(FlakyOutbox::default()),
            server_address: "memory://requests".into(),
            reply_address: "memory://replies".into(),
            reply_queue: "memory://replies".into(),
            client_id: "c-1".into(),
            session_id: Mutex::new(Some("s-1".into())),
            unsigned_trusted: true,
            attribute_detail: detail,
            request_ids,
        };
        let call: ClientJsonRpcMessage = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#,
        )
        .unwrap();
        let names = |shared: Shared| {
            let encoded = shared.encode(&call).unwrap();
            let mut names: Vec<String> = encoded.attributes.keys().cloned().collect();
            names.sort();
            names
        };
        assert_eq!(
            names(shared(Detail::Lean, false)),
            ["ClientId", "ReplyTo", "SessionId"]
        );
        // An outbox layer may put a pointer in the body: the id rides beside it.
        assert_eq!(
            names(shared(Detail::Lean, true)),
            ["ClientId", "ReplyTo", "RequestId", "SessionId"]
        );
        assert_eq!(
            names(shared(Detail::Full, false)),
            [
                "ClientId",
                "MessageType",
                "Method",
                "ReplyTo",
                "RequestId",
                "SessionId",
                "Timestamp"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_request_is_the_same_message_to_a_fifo_queue() {
        let outbox = Arc::new(FlakyOutbox::default());
        let shared = Shared {
            outbox: Arc::new(
                crate::queue::layer::RetryLayer::new(std::time::Duration::from_secs(60))
                    .layer(outbox.clone()),
            ),
            server_address: "memory://requests.fifo".into(),
            reply_address: "memory://replies".into(),
            reply_queue: "memory://replies".into(),
            client_id: "c-1".into(),
            session_id: Mutex::new(None),
            unsigned_trusted: true,
            attribute_detail: Detail::Lean,
            request_ids: false,
        };
        let ping: ClientJsonRpcMessage =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        shared.send(ping).await.unwrap();
        let attempts = outbox.attempts.lock().unwrap().clone();
        assert_eq!(attempts.len(), 2);
        let (first, retry) = (&attempts[0], &attempts[1]);
        assert!(first.deduplication_id.is_some());
        assert_eq!(retry.deduplication_id, first.deduplication_id);
        assert_eq!(retry.group_id.as_deref(), Some("c-1.1"));
        assert_eq!(retry.body, first.body);
        assert_eq!(retry.attributes, first.attributes);
        assert_eq!(retry.attribute(wire::attr::CLIENT_ID), Some("c-1"));
    }
}

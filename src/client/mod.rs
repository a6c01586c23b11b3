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
//! Constructors: [`QueueClientTransport::new`] (any inbox and outbox),
//! [`memory`](QueueClientTransport::memory), `connect_sqs` (feature `sqs`)
//! and `connect_sns_sqs` (feature `sns`), which provision a reply queue (and
//! topic or subscription) on connect and remove it on close.
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

mod order;
mod poller;
#[cfg(feature = "sns")]
mod sns;
#[cfg(feature = "sqs")]
mod sqs;

#[cfg(feature = "sns")]
pub use sns::SnsReplies;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::order::{Received, Reorder};
use crate::queue::backoff::Backoff;
use crate::queue::memory::{MemoryBroker, MemoryQueueOptions};
use crate::queue::{Inbox, Outbox, QueueError, QueueMessage};
use crate::wire::signing::Signing;
use crate::wire::{self, Headers};

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

/// Settings of a [`QueueClientTransport`].
#[derive(Debug, Clone)]
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
    /// one (cloned) config, or a pipeline restarted with a fixed id, never
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
    /// before the call fails with the error. Default 60 s. A retried send
    /// may deliver a request twice; the server answers the copy from its
    /// replay cache. Errors that retrying cannot mend (a message too large,
    /// a missing queue) fail at once.
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
        }
    }
}

/// Cleanup run on close, e.g. deleting a reply queue created on connect.
pub type OnClose = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// What the sending side and the poller share.
struct Shared {
    outbox: Arc<dyn Outbox>,
    server_address: String,
    reply_address: String,
    reply_queue: String,
    client_id: String,
    signing: Option<Signing>,
    send_retry: Duration,
    /// The session id the server issued on `initialize` (legacy versions).
    session_id: Mutex<Option<String>>,
}

impl Shared {
    fn session_id(&self) -> Option<String> {
        self.session_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn send(&self, message: ClientJsonRpcMessage) -> Result<(), ClientError> {
        let give_up = tokio::time::Instant::now() + self.send_retry;
        let mut backoff = Backoff::after_errors();
        // The first attempt's deduplication id (FIFO queues): a retry reuses
        // it, so the queue drops the retry if the first attempt did arrive.
        let mut deduplication_id = None;
        loop {
            // Encoded again for each attempt rather than cloned for a retry
            // that is rarely needed; a retry carries its own send time.
            let mut encoded = self.encode(&message)?;
            match &deduplication_id {
                None => deduplication_id = encoded.deduplication_id.clone(),
                Some(first) => encoded.deduplication_id = Some(first.clone()),
            }
            match self.outbox.send(&self.server_address, encoded).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_permanent() => return Err(error.into()),
                Err(error) => {
                    let pause = backoff.pause();
                    if tokio::time::Instant::now() + pause > give_up {
                        return Err(error.into());
                    }
                    tracing::warn!(%error, retry_in = ?pause, "request not sent; retrying");
                    backoff.wait(&CancellationToken::new()).await;
                }
            }
        }
    }

    /// The queue message for `message`: signed when the client signs, and
    /// for a legacy `initialize`, with the reply address in its parameters.
    fn encode(&self, message: &ClientJsonRpcMessage) -> Result<QueueMessage, ClientError> {
        let headers = Headers {
            session_id: self.session_id(),
            client_id: Some(self.client_id.clone()),
            reply_to: Some(self.reply_address.clone()),
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
        let mut encoded = if crate::queue::is_fifo(&self.server_address) {
            encoded.for_destination(&self.server_address, &fifo_group(&self.client_id, message))
        } else {
            encoded
        };
        if let Some(signing) = &self.signing {
            signing.keys.sign(&mut encoded);
        }
        Ok(encoded)
    }
}

/// An rmcp client transport over queues. See the [module docs](self).
pub struct QueueClientTransport {
    shared: Arc<Shared>,
    incoming: mpsc::Receiver<Received>,
    order: Reorder,
    stop: CancellationToken,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    on_close: Option<OnClose>,
}

impl QueueClientTransport {
    /// A client that receives on `reply_inbox` and sends through `outbox`.
    /// Starts polling the reply queue at once.
    pub fn new(
        reply_inbox: impl Inbox + 'static,
        outbox: impl Outbox + 'static,
        config: QueueClientConfig,
    ) -> Self {
        let client_id = connection_id(&config.client_id);
        Self::with_client_id(reply_inbox, outbox, config, client_id)
    }

    /// [`new`](Self::new) with the connection's `ClientId` chosen already
    /// (a constructor that provisions a filter policy on it).
    fn with_client_id(
        reply_inbox: impl Inbox + 'static,
        outbox: impl Outbox + 'static,
        config: QueueClientConfig,
        client_id: String,
    ) -> Self {
        let inbox: Arc<dyn Inbox> = Arc::new(reply_inbox);
        let shared = Arc::new(Shared {
            outbox: Arc::new(outbox),
            server_address: config.server_address.clone(),
            reply_address: config
                .reply_address
                .clone()
                .unwrap_or_else(|| inbox.info().address.clone()),
            reply_queue: inbox.info().address.clone(),
            client_id,
            signing: config.signing.clone(),
            send_retry: config.send_retry,
            session_id: Mutex::new(None),
        });
        let (sender, incoming) = mpsc::channel(256);
        let stop = CancellationToken::new();
        let pollers = (0..config.pollers.max(1))
            .map(|_| {
                tokio::spawn(poller::run(
                    inbox.clone(),
                    shared.clone(),
                    sender.clone(),
                    poller::PollSettings {
                        wait: config.wait,
                        orphan_after: config.orphan_after,
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
            on_close: None,
        }
    }

    /// A client on an in-process broker, with a reply queue of its own that
    /// is created now and deleted on close.
    pub fn memory(broker: &MemoryBroker, server_address: &str) -> Result<Self, ClientError> {
        let name = format!("asyncmcp-reply-{}", uuid::Uuid::new_v4().simple());
        let address = broker.create_queue(&name, MemoryQueueOptions::default());
        let inbox = broker.inbox(&address)?;
        let cleanup_broker = broker.clone();
        Ok(Self::new(
            inbox,
            broker.outbox(),
            QueueClientConfig::new(server_address),
        )
        .on_close(Box::new(move || {
            Box::pin(async move {
                cleanup_broker.delete_queue(&address);
            })
        })))
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
        loop {
            if let Some(message) = self.order.pop() {
                return Some(message);
            }
            let deadline = self.order.next_deadline();
            tokio::select! {
                received = self.incoming.recv() => match received {
                    Some(received) => self.order.push(received, Instant::now()),
                    None => {
                        self.order.expire(None);
                        return self.order.pop();
                    }
                },
                () = sleep_until_or_never(deadline) => self.order.expire(Some(Instant::now())),
            }
        }
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

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

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

    #[tokio::test(start_paused = true)]
    async fn a_retried_request_is_the_same_message_to_a_fifo_queue() {
        let outbox = Arc::new(FlakyOutbox::default());
        let shared = Shared {
            outbox: outbox.clone(),
            server_address: "memory://requests.fifo".into(),
            reply_address: "memory://replies".into(),
            reply_queue: "memory://replies".into(),
            client_id: "c-1".into(),
            signing: None,
            send_retry: Duration::from_secs(60),
            session_id: Mutex::new(None),
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
        assert_eq!(retry.attribute(wire::attr::METHOD), Some("ping"));
        assert_eq!(retry.attribute(wire::attr::REQUEST_ID), Some("1"));
    }
}

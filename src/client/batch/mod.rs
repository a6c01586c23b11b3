//! [`Batch`]: many `tools/call`s without rmcp's one-response-per-await
//! shape, for pipelines that fire thousands of calls and may restart.
//!
//! A pipeline [submits](Submitter::submit) calls, each under a key of its
//! own; answers come back from [`Batch::next`] in the order they arrive, each
//! naming its key; at most [`in_flight`](BatchBuilder::in_flight) calls are
//! outstanding (a submit waits for a free slot). Each call is independent: a
//! stateless MCP 2026-07-28 request (its protocol version, client info and
//! capabilities in `_meta`, no `initialize`, no session), so any server
//! replica serves any call.
//!
//! # Restarting
//!
//! Everything a restarted pipeline needs is in three stable things, which it
//! keeps (the `asyncmcp batch` command keeps them in a state file):
//!
//! * **the reply queue** ([`BatchBuilder::reply_queue`]): an existing queue,
//!   or one created once ([`create_reply_queue`]) and recorded. It is never
//!   deleted by the batch: answers that arrive while the pipeline is down
//!   wait there (for the queue's retention period, 4 days by default).
//! * **the `ClientId`** ([`BatchBuilder::client_id`]), used as given, with no
//!   random suffix: servers stamp it on every answer, and the batch takes
//!   only answers stamped with it.
//! * **the request ids**, derived from the key and the call
//!   ([`request_id`]): `b1.<digest>.<key>`, where the digest is a SHA-256 of
//!   the tool name and its arguments. A restarted pipeline maps answers to
//!   keys without any table, and an answer to an older version of a call
//!   (the input changed between runs) does not match.
//!
//! An answer is deleted from the reply queue only when the caller says it
//! has kept it ([`Batch::ack`]): a pipeline killed between receiving an
//! answer and storing it gets the answer again after the reply queue's
//! visibility timeout.
//!
//! On restart, calls that may have been sent before are
//! [reattached](Submitter::reattach) (expected, not sent) before the first
//! [`next`](Batch::next), which starts receiving. A call is sent again only
//! when the caller [resubmits](Submitter::submit) it; a server that still
//! holds the answer in its replay cache (the same replica, within its replay
//! window) answers from it without running the tool again, and a replica
//! running it holds the duplicate until the run ends. Another replica runs
//! it again: so resend only calls that were probably never sent (the
//! command waits until answers stop coming).
//!
//! # Who can do what
//!
//! Every attribute of an answer can be written by whoever can send to the
//! reply queue. What that sender can and cannot do:
//!
//! * **Forge an answer** (the `ClientId` and request ids are guessable from
//!   the input): without signing, a forged answer to a pending call is taken
//!   for the real one. With [`signing`](BatchBuilder::signing), answers
//!   without a valid signature are deleted with a warning and the real answer
//!   is still taken when it comes. Sign when anyone else can write to the
//!   reply queue.
//! * **Answer a call twice, or answer calls never made**: the first answer to
//!   a pending call is taken; later ones, and answers to no pending call, are
//!   deleted with a debug log. A replayed answer of a finished call changes
//!   nothing.
//! * **Fill the queue with others' messages**: messages stamped with another
//!   `ClientId` are given back for their owner, and deleted as orphans after
//!   [`orphan_after`](BatchBuilder::orphan_after) receives.
//!
//! Two pipelines may share a reply queue if their `ClientId`s differ. Two
//! running at once with one `ClientId` on one queue take each other's
//! answers: keys they share are then answered for whichever asked first, and
//! the other waits. Give each pipeline its own id (the command adds a random
//! suffix on a first run and locks its state file).

mod builder;
mod receive;

pub use builder::BatchBuilder;
#[cfg(feature = "sqs")]
pub use builder::create_reply_queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::{CallToolResult, ErrorData, JsonObject};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::queue::{Inbox, Outbox, QueueError, Receipt};
use crate::wire::{self, Detail, Headers};

/// The prefix of the request ids of batch calls; the scheme's version.
const ID_PREFIX: &str = "b1.";

/// Errors of a [`Batch`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The broker failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A request could not be encoded.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The key is pending already, for another call.
    #[error("key {0:?} is pending already, for another call")]
    DuplicateKey(String),
    /// `connect_sqs` was given no reply queue.
    #[error("a batch needs a reply queue: set BatchBuilder::reply_queue")]
    NoReplyQueue,
    /// The batch was closed.
    #[error("the batch is closed")]
    Closed,
}

/// One call of a batch: a tool and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The tool's name.
    pub tool: String,
    /// Its arguments.
    pub arguments: Option<JsonObject>,
}

impl Call {
    /// A call of `tool` with `arguments`.
    pub fn new(tool: impl Into<String>, arguments: Option<JsonObject>) -> Self {
        Self {
            tool: tool.into(),
            arguments,
        }
    }

    /// SHA-256 of the tool name and its arguments (as JSON), the first 8
    /// bytes in hex.
    fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.tool.as_bytes());
        hash.update([0]);
        let arguments = self
            .arguments
            .as_ref()
            .map(|args| Value::Object(args.clone()).to_string())
            .unwrap_or_default();
        hash.update(arguments.as_bytes());
        hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The JSON-RPC request id of the call `call` made under `key`:
/// `b1.<16 hex digits of the call's digest>.<key>`. The same key and call
/// always give the same id, in any process.
pub fn request_id(key: &str, call: &Call) -> String {
    format!("{ID_PREFIX}{}.{key}", call.digest())
}

/// The key a batch request id names, if it is one.
pub fn key_of(request_id: &str) -> Option<&str> {
    let rest = request_id.strip_prefix(ID_PREFIX)?;
    let (digest, key) = rest.split_once('.')?;
    (digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

/// An answer to one call of the batch.
#[derive(Debug)]
#[non_exhaustive]
pub struct Answer {
    /// The key the call was submitted under.
    pub key: String,
    /// The tool's result, or the JSON-RPC error the server answered with.
    /// (A result the tool marked `isError` is a result.)
    pub outcome: Result<CallToolResult, ErrorData>,
    /// The answer as it came: the `result` or `error` member of the
    /// response.
    pub raw: Value,
    receipt: Receipt,
}

/// The calls outstanding, by request id, and the bound on them.
struct Pending {
    calls: HashMap<String, String>,
    /// The keys of `calls`.
    keys: std::collections::HashSet<String>,
    /// Calls counted against the bound (reattached ones included).
    limit: usize,
}

/// What the submitters, the receivers and the batch share.
struct Shared {
    outbox: Arc<dyn Outbox>,
    inbox: Arc<dyn Inbox>,
    server_address: String,
    reply_address: String,
    client_id: String,
    /// Which attributes calls carry.
    attribute_detail: Detail,
    /// Whether calls carry their `RequestId` in lean detail too: with
    /// offload, the body may be a pointer, and the attribute is how a
    /// server answers a call whose payload it cannot fetch.
    request_ids: bool,
    pending: Mutex<Pending>,
    /// Woken when a call stops being pending.
    freed: Notify,
    stop: CancellationToken,
    /// Whether unsigned answers are accepted (no signatures required): then
    /// an answer whose offloaded payload is gone fails its call by its
    /// `RequestId` (see `receive.rs`).
    #[cfg_attr(not(feature = "offload"), allow(dead_code))]
    unsigned_trusted: bool,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the call answered by `request_id` off the pending calls; false
    /// when it was not pending.
    fn answered(&self, request_id: &str) -> bool {
        let removed = {
            let mut pending = self.pending();
            match pending.calls.remove(request_id) {
                Some(key) => pending.keys.remove(&key),
                None => false,
            }
        };
        if removed {
            self.freed.notify_waiters();
        }
        removed
    }

    /// The queue message of the call `call` under `request_id`.
    fn encode(
        &self,
        request_id: &str,
        call: &Call,
    ) -> Result<crate::queue::QueueMessage, BatchError> {
        let mut params = json!({
            "name": call.tool,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "asyncmcp-batch", "version": env!("CARGO_PKG_VERSION")},
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        });
        if let Some(arguments) = &call.arguments {
            params["arguments"] = Value::Object(arguments.clone());
        }
        let body =
            json!({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params});
        let headers = Headers {
            detail: self.attribute_detail,
            client_id: Some(self.client_id.clone()),
            reply_to: Some(self.reply_address.clone()),
            request_id: self.request_ids.then(|| request_id.to_owned()),
            ..Headers::default()
        };
        let message = wire::encode_value(&body, &headers)?;
        // On a FIFO queue, a group per call, so calls do not wait on each
        // other (a running call holds its group until it is answered).
        let group = format!(
            "{}.{}",
            self.client_id.chars().take(60).collect::<String>(),
            &request_id[ID_PREFIX.len()..ID_PREFIX.len() + 16]
        );
        Ok(message.for_destination(&self.server_address, &group))
    }
}

/// Submits calls to a [`Batch`]; cheap to clone, usable from many tasks.
#[derive(Clone)]
pub struct Submitter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("client_id", &self.shared.client_id)
            .finish_non_exhaustive()
    }
}

impl Submitter {
    /// Sends `call` under `key`, once fewer than the bound of calls are
    /// pending (it waits for a free slot): [`reserve`](Self::reserve), then
    /// [`Reservation::send`]. Resolves once the request is sent.
    pub async fn submit(&self, key: &str, call: &Call) -> Result<(), BatchError> {
        self.reserve(key, call).await?.send().await
    }

    /// Takes a slot for `call` under `key`, waiting while the bound of calls
    /// is pending, without sending it yet: a pipeline can note that the call
    /// is about to be sent (durably) between the two. Reserving a key that
    /// is pending with the same call (a [reattached](Self::reattach) one,
    /// say) takes no other slot, and sending it sends the call again; with
    /// another call, it is [`BatchError::DuplicateKey`].
    pub async fn reserve(&self, key: &str, call: &Call) -> Result<Reservation, BatchError> {
        let id = request_id(key, call);
        let message = self.shared.encode(&id, call)?;
        loop {
            if self.shared.stop.is_cancelled() {
                return Err(BatchError::Closed);
            }
            let freed = self.shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut pending = self.shared.pending();
                if pending.calls.contains_key(&id) {
                    return Ok(Reservation {
                        shared: self.shared.clone(),
                        id,
                        message: Some(message),
                        taken: false,
                    });
                }
                if pending.keys.contains(key) {
                    return Err(BatchError::DuplicateKey(key.to_owned()));
                }
                if pending.calls.len() < pending.limit {
                    pending.calls.insert(id.clone(), key.to_owned());
                    pending.keys.insert(key.to_owned());
                    return Ok(Reservation {
                        shared: self.shared.clone(),
                        id,
                        message: Some(message),
                        taken: true,
                    });
                }
            }
            tokio::select! {
                () = freed => {}
                () = self.shared.stop.cancelled() => return Err(BatchError::Closed),
            }
        }
    }

    /// Expects an answer to `call` under `key` without sending it: a call a
    /// previous run of the pipeline may have sent. It counts against the
    /// bound at once (even beyond it). Call before the first
    /// [`Batch::next`]: an answer that arrives for no pending call is
    /// deleted.
    pub fn reattach(&self, key: &str, call: &Call) -> Result<(), BatchError> {
        let id = request_id(key, call);
        let mut pending = self.shared.pending();
        if !pending.calls.contains_key(&id) && pending.keys.contains(key) {
            return Err(BatchError::DuplicateKey(key.to_owned()));
        }
        pending.calls.insert(id, key.to_owned());
        pending.keys.insert(key.to_owned());
        Ok(())
    }

    /// How many calls are pending: sent or reattached, not yet answered.
    pub fn pending(&self) -> usize {
        self.shared.pending().calls.len()
    }
}

/// A slot taken by [`Submitter::reserve`] for one call; dropped unsent, it
/// frees the slot.
pub struct Reservation {
    shared: Arc<Shared>,
    id: String,
    message: Option<crate::queue::QueueMessage>,
    /// Whether this reservation took the slot (rather than finding the call
    /// pending already).
    taken: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("request_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The call's request id.
    pub fn request_id(&self) -> &str {
        &self.id
    }

    /// Sends the call. A send that fails frees the slot.
    pub async fn send(mut self) -> Result<(), BatchError> {
        let Some(message) = self.message.take() else {
            return Ok(());
        };
        tracing::debug!(request_id = %self.id, method = "tools/call", client_id = %self.shared.client_id, "sending a batch call");
        match self
            .shared
            .outbox
            .send(&self.shared.server_address, message)
            .await
        {
            Ok(()) => {
                self.taken = false;
                Ok(())
            }
            // Dropped with `taken`: not pending any more.
            Err(error) => Err(error.into()),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.taken {
            self.shared.answered(&self.id);
        }
    }
}

/// A batch pipeline's connection: submit through [`submitter`](Self::submitter),
/// collect with [`next`](Self::next). See the [module docs](self).
pub struct Batch {
    shared: Arc<Shared>,
    answers: Option<mpsc::Receiver<Answer>>,
    receivers: usize,
    wait: std::time::Duration,
    orphan_after: u32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("client_id", &self.shared.client_id)
            .field("server_address", &self.shared.server_address)
            .field("reply_address", &self.shared.reply_address)
            .field("receiving", &!self.tasks.is_empty())
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Starts building a batch of calls to the server at `server_address`.
    pub fn builder(server_address: impl Into<String>) -> BatchBuilder {
        BatchBuilder::new(server_address.into())
    }

    /// A handle that submits calls.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            shared: self.shared.clone(),
        }
    }

    /// The `ClientId` every call carries.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The queue answers are received on.
    pub fn reply_queue(&self) -> &str {
        &self.shared.inbox.info().address
    }

    /// The next answer, in the order answers arrive; `None` once the batch
    /// is closed. The first call starts receiving. Receive failures are
    /// retried with a backoff (and logged), not returned.
    pub async fn next(&mut self) -> Option<Answer> {
        if self.answers.is_none() {
            self.start();
        }
        let answers = self.answers.as_mut()?;
        tokio::select! {
            answer = answers.recv() => answer,
            () = self.shared.stop.cancelled() => None,
        }
    }

    /// An answer received already, if there is one; never waits. (Does not
    /// start receiving: [`next`](Self::next) does.)
    pub fn try_next(&mut self) -> Option<Answer> {
        self.answers.as_mut()?.try_recv().ok()
    }

    fn start(&mut self) {
        let (sender, receiver) = mpsc::channel(256);
        self.answers = Some(receiver);
        for _ in 0..self.receivers.max(1) {
            self.tasks.push(tokio::spawn(receive::run(
                self.shared.clone(),
                sender.clone(),
                receive::Settings {
                    wait: self.wait,
                    orphan_after: self.orphan_after,
                },
            )));
        }
    }

    /// Deletes `answer` from the reply queue: call it once the answer is
    /// kept, so a pipeline that stops before keeping it gets it again.
    pub async fn ack(&self, answer: &Answer) -> Result<(), BatchError> {
        Ok(self.shared.inbox.ack(&answer.receipt).await?)
    }

    /// Stops receiving and submitting. Answers received and not acked come
    /// back after the reply queue's visibility timeout; the reply queue
    /// stays.
    pub async fn close(mut self) {
        self.shared.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

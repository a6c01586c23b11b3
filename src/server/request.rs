//! Runs one request through a fresh rmcp service and relays what it emits.
//!
//! The service is driven by a one-request transport (`transport.rs`), as
//! rmcp's stateless Streamable HTTP server does: the request goes in, and
//! every message the service emits (progress and log notifications, then the
//! final response) comes out of a channel, which this module forwards to the
//! reply address one at a time, in order; a request the service makes of the
//! client is refused at once. For the whole run, sends included, its
//! visibility is extended every half visibility timeout (a heartbeat,
//! `heartbeat.rs`), within the broker's visibility ceiling, so a long handler
//! or a stalled send does not let it reappear for another replica.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorCode, GetExtensions, InitializeRequestParams,
    JsonRpcRequest, RequestId, ServerJsonRpcMessage, ServerResult, TASKS_EXTENSION_ID,
};
use rmcp::service::serve_directly_with_ct;
use rmcp::{RoleServer, Service};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::heartbeat::{self, Heartbeat};
use super::redeliver::Redeliver;
use super::transport::RequestTransport;

use crate::queue::{Inbox, Outbox, QueueError, QueueMessage, Receipt};
use crate::wire::session::{SessionKeys, SessionState};
use crate::wire::{self, Detail, Headers, WireError};

/// JSON-RPC error code for a request that exceeded the server's deadline
/// (the code MCP SDKs use for request timeouts).
pub const REQUEST_TIMEOUT: ErrorCode = ErrorCode(-32001);

/// How long a handler that gave its request back may take to return.
const DRAIN_AFTER_REDELIVER: Duration = Duration::from_secs(1);

/// How a request ended, which decides how its delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The final response (or an error in its place) was sent: ack.
    Answered,
    /// The client cancelled it: ack, send nothing.
    Cancelled,
    /// Shutdown ran out of grace: release it for another replica.
    Abandoned,
    /// The handler gave it back unanswered ([`Redeliver`]): leave it for
    /// redelivery, or dead-letter it on its last allowed delivery.
    Redeliver,
    /// The final response could not be sent for a passing reason: leave the
    /// request for redelivery.
    ReplyFailed,
    /// The response can never be sent: the reply address refuses it for good
    /// (e.g. it does not exist), or it cannot be encoded. Ack, so the request
    /// does not loop until the dead-letter queue.
    Undeliverable,
}

/// Why a reply was not sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReplyError {
    /// The message could not be encoded: sending it again cannot help.
    #[error(transparent)]
    Encode(#[from] WireError),
    /// The outbox did not take it.
    #[error(transparent)]
    Send(#[from] QueueError),
}

impl ReplyError {
    /// Whether sending the same reply again cannot succeed (see
    /// [`QueueError::is_permanent`]); an encoding failure never can.
    pub(super) fn is_permanent(&self) -> bool {
        match self {
            ReplyError::Encode(_) => true,
            ReplyError::Send(error) => error.is_permanent(),
        }
    }
}

/// How [`run`] ended, and the body of the final response it sent (or could
/// not send for a passing reason), if the [`Reply`] was
/// [keeping it](Reply::keeping_final).
pub(super) struct Finished {
    pub(super) outcome: Outcome,
    pub(super) response: Option<String>,
    /// With [`Outcome::Redeliver`]: the handler's reason.
    pub(super) redeliver_reason: Option<String>,
    /// With [`Outcome::ReplyFailed`] or [`Outcome::Undeliverable`]: why the
    /// final response was not sent, for the dead-letter reason.
    pub(super) reply_error: Option<String>,
}

impl Finished {
    /// A request that ended with `outcome`, keeping nothing for replay.
    pub(super) fn answered(outcome: Outcome) -> Self {
        Self {
            outcome,
            response: None,
            redeliver_reason: None,
            reply_error: None,
        }
    }
}

/// Sends the messages of one request to its reply address.
pub(super) struct Reply {
    outbox: Arc<dyn Outbox>,
    address: String,
    headers: Headers,
    /// The message group on a FIFO reply queue: one per client (or
    /// session) keeps a request's notifications before its response.
    group: String,
    /// On `initialize`: seal the negotiated session into the response.
    seal: Option<(SessionKeys, SessionState)>,
    /// For the messages of a request: the `Sequence` of the next one.
    next_sequence: Option<u64>,
    /// Whether to keep the body of the final response once sent.
    keep_final: bool,
    /// The body of the final response (or error) once it has been sent.
    kept_final: Option<String>,
    /// Why the final response (or error) was not sent, if it was not.
    final_error: Option<String>,
    /// Add the tasks extension to the capabilities a `server/discover`
    /// result declares: the server runs calls as tasks, whatever the
    /// handler declares.
    advertise_tasks: bool,
}

impl Reply {
    /// Replies to `address` through `outbox` (which signs them when the
    /// server signs: its [`SignLayer`](crate::queue::layer::SignLayer)).
    ///
    /// In [lean detail](Detail::Lean) the replies carry the session id only
    /// when there is no client id to tell them apart by (and on the
    /// `initialize` response, which issues it).
    pub(super) fn new(outbox: Arc<dyn Outbox>, address: String, mut headers: Headers) -> Self {
        let group = headers
            .client_id
            .as_deref()
            .or(headers.session_id.as_deref())
            .unwrap_or("asyncmcp")
            .to_owned();
        if headers.detail == Detail::Lean && headers.client_id.is_some() {
            headers.session_id = None;
        }
        Self {
            outbox,
            address,
            headers,
            group,
            seal: None,
            next_sequence: None,
            keep_final: false,
            kept_final: None,
            final_error: None,
            advertise_tasks: false,
        }
    }

    /// Declares the tasks extension in a `server/discover` result this sends.
    pub(super) fn advertising_tasks(mut self) -> Self {
        self.advertise_tasks = true;
        self
    }

    /// Numbers the messages sent for request `request_id` (`RequestId` and
    /// `Sequence` attributes), so that the client can hand over the request's
    /// notifications before its final response even when the broker
    /// reorders them.
    pub(super) fn numbered(mut self, request_id: String) -> Self {
        self.headers.request_id = Some(request_id);
        self.next_sequence = Some(1);
        self
    }

    /// Keeps the body of the final response once it is sent (for replay).
    pub(super) fn keeping_final(mut self) -> Self {
        self.keep_final = true;
        self
    }

    /// Issues a session id when the request turns out to be a successful
    /// `initialize`, carrying `template` with the negotiated version.
    pub(super) fn seal_session_with(&mut self, keys: SessionKeys, template: SessionState) {
        self.seal = Some((keys, template));
    }

    /// How a request whose final response this sent (or tried to) ended:
    /// `outcome`, with the response kept for replay and the send's error.
    pub(super) fn finished(mut self, outcome: Outcome) -> Finished {
        Finished {
            outcome,
            response: self.kept_final.take(),
            redeliver_reason: None,
            reply_error: self.final_error.take(),
        }
    }

    /// Sends an already-built JSON-RPC message (an error reply, or a kept
    /// response replayed).
    pub(super) async fn send_value(&mut self, message: &Value) -> Result<(), ReplyError> {
        self.headers.sequence = self.next_sequence;
        let encoded = wire::encode_value(message, &self.headers).inspect_err(not_encoded)?;
        Ok(self
            .deliver(encoded, message.get("method").is_none())
            .await?)
    }

    /// Sends `encoded`; `is_final` when it is the response or error that
    /// ends the request. A notification that was not sent does not use up
    /// its sequence number: the client waits only for notifications that are
    /// on their way.
    async fn deliver(&mut self, encoded: QueueMessage, is_final: bool) -> Result<(), QueueError> {
        let encoded = encoded.for_destination(&self.address, &self.group);
        let body = (self.keep_final && is_final).then(|| encoded.body.clone());
        let result = self.outbox.send(&self.address, encoded).await;
        match &result {
            Ok(()) if !is_final => {
                self.next_sequence = self.next_sequence.map(|n| n + 1);
            }
            Ok(()) => self.kept_final = body,
            Err(error) => {
                tracing::warn!(reply_to = %self.address, %error, "reply not sent");
                if is_final {
                    self.final_error = Some(error.to_string());
                }
                // The redelivery will replay this response rather than run
                // the handler again.
                if is_final && !error.is_permanent() {
                    self.kept_final = body;
                }
            }
        }
        result
    }

    /// Sends a message the service emitted. A final response too large for
    /// the reply queue is replaced by an error saying so; a notification too
    /// large is dropped with a warning.
    async fn send(&mut self, message: &ServerJsonRpcMessage) -> Result<(), ReplyError> {
        if let (Some((keys, template)), ServerJsonRpcMessage::Response(response)) =
            (&self.seal, message)
            && let ServerResult::InitializeResult(result) = &response.result
        {
            let state = SessionState {
                protocol_version: result.protocol_version.to_string(),
                ..template.clone()
            };
            self.headers.session_id = Some(keys.seal(&state));
        }
        let advertised;
        let message = match message {
            ServerJsonRpcMessage::Response(response) if self.advertise_tasks => {
                match &response.result {
                    ServerResult::DiscoverResult(discovered) => {
                        let mut discovered = discovered.clone();
                        discovered
                            .capabilities
                            .extensions
                            .get_or_insert_with(Default::default)
                            .insert(TASKS_EXTENSION_ID.to_owned(), Default::default());
                        let mut response = response.clone();
                        response.result = ServerResult::DiscoverResult(discovered);
                        advertised = ServerJsonRpcMessage::Response(response);
                        &advertised
                    }
                    _ => message,
                }
            }
            _ => message,
        };
        self.headers.sequence = self.next_sequence;
        // Serialized straight to the body: a `Value` in between would build
        // and drop a tree of the whole result.
        let encoded = wire::encode_message(message, &self.headers).inspect_err(not_encoded)?;
        let is_final = matches!(
            message,
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
        );
        match self.deliver(encoded, is_final).await {
            Err(QueueError::TooLarge { size, limit }) => {
                let id = match message {
                    ServerJsonRpcMessage::Response(r) => Some(r.id.clone()),
                    ServerJsonRpcMessage::Error(e) => e.id.clone(),
                    _ => {
                        tracing::warn!(
                            size,
                            limit,
                            "notification too large for the reply queue; dropped"
                        );
                        return Ok(());
                    }
                };
                let text = format!(
                    "response of {size} bytes exceeds the reply address's limit of {limit} bytes"
                );
                self.send_value(&wire::error_reply(
                    id.as_ref(),
                    ErrorCode::INTERNAL_ERROR,
                    &text,
                ))
                .await
            }
            other => other.map_err(ReplyError::from),
        }
    }
}

/// Logs a reply that could not be encoded (a send failure is logged where it
/// is sent).
fn not_encoded(error: &WireError) {
    tracing::error!(%error, "reply not encoded");
}

/// What [`run`] needs besides the request.
pub(super) struct Run {
    pub(super) reply: Reply,
    pub(super) inbox: Arc<dyn Inbox>,
    pub(super) receipt: Receipt,
    /// When the request was received (before any wait as a duplicate).
    pub(super) received: Instant,
    /// The broker's cap on its total visibility, from `received`.
    pub(super) visibility_ceiling: Duration,
    pub(super) timeout: Option<Duration>,
    /// Cancelled by `notifications/cancelled` from the client.
    pub(super) cancelled: CancellationToken,
    /// Cancelled when shutdown has run out of grace.
    pub(super) abandon: CancellationToken,
}

/// Runs `request` through `service` and relays everything it emits.
///
/// The heartbeat, the deadline, cancellation and shutdown are watched for
/// the whole run, sends included: a send the broker holds up (it accepts
/// the call and does not answer) neither lets the request reappear for
/// another replica nor keeps the run from ending.
pub(super) async fn run<S: Service<RoleServer>>(
    service: S,
    mut request: JsonRpcRequest<ClientRequest>,
    peer_info: Option<InitializeRequestParams>,
    run: Run,
) -> Finished {
    let Run {
        mut reply,
        inbox,
        receipt,
        received,
        visibility_ceiling,
        timeout,
        cancelled,
        abandon,
    } = run;
    let id = request.id.clone();
    let redeliver = Redeliver::new();
    request.request.extensions_mut().insert(redeliver.clone());
    let (transport, mut emitted) = RequestTransport::new(ClientJsonRpcMessage::Request(request));
    let service_ct = CancellationToken::new();
    // Kept, not awaited: the service runs on its own task, and dropping this
    // handle cancels it, as `_stop_service` does anyway (a task to await it
    // would cost a spawn per request and change nothing).
    let _running = serve_directly_with_ct(service, transport, peer_info, service_ct.clone());
    // Stops the handler however this function ends (including being
    // dropped). Declared after `_running`, so dropped before it: the service
    // is cancelled by the time its handle goes.
    let _stop_service = service_ct.clone().drop_guard();

    let heartbeat = Heartbeat::new(inbox, receipt, received, visibility_ceiling);
    // Whichever comes first: the server's own timeout, or the time the call
    // must end to be answered before the visibility ceiling.
    let ceiling_at = heartbeat.ends_at();
    let limit = match timeout {
        Some(timeout) if Instant::now() + timeout < ceiling_at => {
            let text = format!("Request timed out after {} ms", timeout.as_millis());
            (Instant::now() + timeout, text)
        }
        _ => {
            let text = format!(
                "Request timed out: it neared the {} visibility ceiling (how long the broker keeps a received request hidden) and was ended before it",
                heartbeat::human(heartbeat.ceiling())
            );
            (ceiling_at, text)
        }
    };
    let work = async {
        tokio::select! {
            outcome = relay(&mut reply, &mut emitted, &id, &redeliver) => outcome,
            () = tokio::time::sleep_until(limit.0) => {
                service_ct.cancel();
                tracing::warn!(?timeout, ceiling = ?visibility_ceiling, "request timed out; handler cancelled");
                let error = wire::error_reply(Some(&id), REQUEST_TIMEOUT, &limit.1);
                settle_final(reply.send_value(&error).await)
            }
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = heartbeat.keep_hidden() => unreachable!("the heartbeat runs until dropped"),
        () = cancelled.cancelled() => {
            service_ct.cancel();
            tracing::info!("request cancelled by the client");
            Outcome::Cancelled
        }
        () = abandon.cancelled() => {
            service_ct.cancel();
            tracing::info!("request abandoned at shutdown; releasing it");
            Outcome::Abandoned
        }
        () = redeliver.requested() => Outcome::Redeliver,
    };
    if outcome == Outcome::Redeliver {
        // The handler asked before returning: take (and drop) what it still
        // emits, its response included, so that it ends normally rather
        // than failing to send into a closed channel.
        let _ = tokio::time::timeout(DRAIN_AFTER_REDELIVER, async {
            while let Some(message) = emitted.recv().await {
                if matches!(
                    message,
                    ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
                ) {
                    break;
                }
            }
        })
        .await;
        service_ct.cancel();
    }
    Finished {
        outcome,
        response: reply.kept_final.take(),
        redeliver_reason: redeliver.reason(),
        reply_error: reply.final_error.take(),
    }
}

/// Relays what the service emits, in order, until its final response is
/// sent (or could not be).
async fn relay(
    reply: &mut Reply,
    emitted: &mut mpsc::Receiver<ServerJsonRpcMessage>,
    id: &RequestId,
    redeliver: &Redeliver,
) -> Outcome {
    loop {
        let received = emitted.recv().await;
        // Checked before anything is sent: the handler asks before it
        // returns, so its response (an error in place of a result it could
        // not compute) is never sent.
        if redeliver.is_requested() {
            return Outcome::Redeliver;
        }
        let Some(message) = received else {
            // The service stopped without a final response.
            tracing::error!("service ended without a response");
            let error = wire::error_reply(
                Some(id),
                ErrorCode::INTERNAL_ERROR,
                "Internal error: the handler ended without a response",
            );
            return settle_final(reply.send_value(&error).await);
        };
        let terminal = matches!(
            message,
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
        );
        let sent = reply.send(&message).await;
        if terminal {
            return settle_final(sent);
        }
    }
}

/// The outcome of a request by whether its final response was sent.
pub(super) fn settle_final(sent: Result<(), ReplyError>) -> Outcome {
    match sent {
        Ok(()) => Outcome::Answered,
        Err(error) if error.is_permanent() => Outcome::Undeliverable,
        Err(_) => Outcome::ReplyFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoding_failure_is_permanent_and_a_send_failure_as_the_queue_says() {
        let serde = serde_json::from_str::<Value>("{").expect_err("not JSON");
        let encode = ReplyError::from(WireError::Serialize(serde));
        assert!(encode.is_permanent());
        assert!(encode.to_string().starts_with("cannot serialize message:"));
        assert!(matches!(
            encode,
            ReplyError::Encode(WireError::Serialize(_))
        ));

        let passing = ReplyError::from(QueueError::Closed);
        assert!(!passing.is_permanent());
        assert_eq!(passing.to_string(), "closed");
        let missing = ReplyError::from(QueueError::NoSuchQueue("q".to_owned()));
        assert!(missing.is_permanent());
        assert!(matches!(
            missing,
            ReplyError::Send(QueueError::NoSuchQueue(_))
        ));
    }
}

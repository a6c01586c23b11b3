//! Routes one delivery: decode, find and check the reply address, then run,
//! cancel, answer with an error, or drop it. Every path settles the delivery.

use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, ClientJsonRpcMessage, ClientNotification, ClientRequest, ErrorCode,
    GetMeta, Implementation, InitializeRequestParams, JsonRpcRequest, ProtocolVersion, RequestId,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::clip::clip;
use super::dead_letter;
use super::heartbeat::Heartbeat;
use super::inflight::{self, Caller, InFlight, RequestKey};
use super::replay::{self, ReplayCache};
use super::request::{self, Outcome, Reply, ReplyError};
use super::{ServerConfig, ServiceFactory};
use crate::queue::{Delivery, Inbox, Outbox, QueueMessage};
use crate::wire::session::SessionState;
use crate::wire::{self, Headers};

/// State shared by the pollers and every request of one server.
pub(super) struct Shared<F> {
    pub(super) factory: F,
    pub(super) inbox: Arc<dyn Inbox>,
    pub(super) outbox: Arc<dyn Outbox>,
    pub(super) config: ServerConfig,
    pub(super) inflight: Arc<InFlight>,
    /// Final responses of answered requests, for duplicates.
    pub(super) replay: ReplayCache,
    /// Cancelled when the shutdown grace period is over.
    pub(super) abandon: CancellationToken,
}

/// Where a message came from and where its replies go.
struct Route {
    /// The session the message presented and that verified.
    session: Option<SessionState>,
    /// The checked reply address, or why there is none.
    reply_to: Result<String, String>,
    /// Identifies the sender for cancellation and logs.
    origin: String,
}

impl<F: ServiceFactory> Shared<F> {
    pub(super) fn new(
        factory: F,
        inbox: Arc<dyn Inbox>,
        outbox: Arc<dyn Outbox>,
        config: ServerConfig,
    ) -> Self {
        // Kept at least as long as a redelivery can take (see replay.rs).
        let lifetime = replay::lifetime(config.replay_window, inbox.info().visibility_timeout);
        Self {
            factory,
            inbox,
            outbox,
            replay: ReplayCache::new(lifetime, config.replay_budget),
            config,
            inflight: Arc::default(),
            abandon: CancellationToken::new(),
        }
    }

    /// Handles one delivery to the end and settles it.
    pub(super) async fn handle(self: Arc<Self>, delivery: Delivery) {
        // As near to the broker's receipt as this process knows: the
        // visibility ceiling counts from there.
        let received = tokio::time::Instant::now();
        // The message as it was sent, out of any SNS envelope: what is
        // decoded, what its signature covers and what identifies a request.
        let unwrapped = wire::envelope::unwrap(&delivery.message);
        let message = unwrapped.as_ref().unwrap_or(&delivery.message);
        let mut decoded = wire::decode_client_message(message);
        let headers = decoded.headers;
        let init_reply_to = decoded
            .message
            .as_mut()
            .ok()
            .and_then(|inbound| inbound.init_reply_to.take());
        let route = self
            .check_signature(message)
            .and_then(|()| self.route(&headers, init_reply_to));
        let route = match route {
            Ok(route) => route,
            Err(reason) => {
                // A signature or session id that does not verify is forged,
                // altered or from another deployment: nothing the message
                // claims can be trusted.
                tracing::warn!(message_id = %delivery.message_id, %reason, "refused message");
                let id = match &decoded.message {
                    Ok(inbound) => request_id_of(&inbound.message),
                    Err(error) => error.request_id().cloned(),
                };
                let sent = self.answer_refused(&headers, id.as_ref(), &reason).await;
                self.settle_error_reply(&delivery, sent).await;
                return;
            }
        };
        let inbound = match decoded.message {
            Ok(inbound) => inbound,
            Err(error) => {
                tracing::warn!(message_id = %delivery.message_id, origin = %clip(short(&route.origin)), error = %clip(&error.to_string()), "unservable message");
                let sent = match route.reply_to {
                    Ok(reply_to) => {
                        let text = match error {
                            wire::WireError::NotJson(_) => "Parse error: body is not valid JSON",
                            _ => "Invalid request: not a valid JSON-RPC request",
                        };
                        let id = error.request_id();
                        let mut reply = self.reply(reply_to, reply_headers(&headers));
                        reply
                            .send_value(&wire::error_reply(id, error.code(), text))
                            .await
                    }
                    Err(reason) => {
                        tracing::warn!(message_id = %delivery.message_id, reason = %clip(&reason), "cannot answer: no usable reply address");
                        Ok(())
                    }
                };
                self.settle_error_reply(&delivery, sent).await;
                return;
            }
        };
        match inbound.message {
            ClientJsonRpcMessage::Request(request) => {
                // Only a request needs its body's digest (its identity).
                let body = inflight::body_digest(&message.body);
                // Boxed: a request's future is several kilobytes, and the
                // task running this one is moved whole when it is spawned
                // and again when it finishes.
                Box::pin(self.handle_request(delivery, received, headers, route, request, body))
                    .await
            }
            ClientJsonRpcMessage::Notification(notification) => {
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                {
                    // Only the caller's own requests, at the address it
                    // named: a cancel cannot reach another caller's call.
                    let found = match &route.reply_to {
                        Ok(reply_to) => self.inflight.cancel(&Caller {
                            origin: route.origin.clone(),
                            reply_to: reply_to.clone(),
                            request_id: wire::request_id_text(id),
                        }),
                        Err(_) => false,
                    };
                    tracing::info!(request_id = %clip(&wire::request_id_text(id)), origin = %clip(short(&route.origin)), found, "cancel requested");
                }
                self.ack(&delivery).await;
            }
            ClientJsonRpcMessage::Response(_) | ClientJsonRpcMessage::Error(_) => {
                tracing::warn!(
                    origin = %clip(short(&route.origin)),
                    "dropping a client response: server-to-client requests are not supported over queues"
                );
                self.ack(&delivery).await;
            }
        }
    }

    async fn handle_request(
        self: Arc<Self>,
        delivery: Delivery,
        received: tokio::time::Instant,
        headers: Headers,
        route: Route,
        request: JsonRpcRequest<ClientRequest>,
        body: [u8; 16],
    ) {
        let request_id = wire::request_id_text(&request.id);
        // Fields are only evaluated when the span is enabled.
        let span = tracing::info_span!(
            "mcp_request",
            request_id = %clip(&request_id),
            method = %clip(request.request.method()),
            session = %clip(short(&route.origin)),
        );
        async move {
            let reply_to = match route.reply_to {
                Ok(reply_to) => reply_to,
                Err(reason) => {
                    tracing::warn!(reason = %clip(&reason), "request dropped: no usable reply address");
                    self.ack(&delivery).await;
                    return;
                }
            };
            let key = RequestKey {
                caller: Caller {
                    origin: route.origin.clone(),
                    reply_to: reply_to.clone(),
                    request_id: request_id.clone(),
                },
                body,
            };
            let registration = loop {
                match self.inflight.register(key.clone()) {
                    Some(registration) => break registration,
                    // The same request is running here: this is a
                    // redelivery, or the caller sent it again. Hidden until
                    // the first run ends, then answered from replay below.
                    None => {
                        tracing::info!("duplicate of a running request; held until it ends");
                        if !self.hold_duplicate(&delivery, received, &key).await {
                            return;
                        }
                    }
                }
            };
            // Looked up once registered: a run keeps its response before it
            // unregisters, so a duplicate finds it running or answered.
            if let Some(response) = self
                .replay
                .get(&key, tokio::time::Instant::now())
                .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            {
                tracing::info!("duplicate of an answered request; replaying its response");
                let mut reply = self
                    .reply(reply_to, reply_headers(&headers))
                    .numbered(request_id.clone());
                match reply.send_value(&response).await {
                    // Left for redelivery, to be replayed then.
                    Err(error) if !error.is_permanent() => self.retry_soon(&delivery).await,
                    _ => self.ack(&delivery).await,
                }
                drop(registration);
                return;
            }
            // Checked only now: a delivery of a request that is running or
            // answered is not poison, however often it came.
            if let Some(dead_letter) = &self.config.dead_letter
                && delivery.receive_count > dead_letter.max_receive_count
            {
                let reason = format!(
                    "delivered {} times; no earlier attempt ended with an answer (the server stopped, or the reply could not be sent)",
                    delivery.receive_count
                );
                // Boxed, as a rare path: inline, its state would enlarge the
                // future of every delivery. Registered until it is settled,
                // so that a duplicate waits and then finds the notice kept.
                Box::pin(self.dead_letter(
                    dead_letter::Request {
                        delivery: &delivery,
                        key: &key,
                        id: &request.id,
                        reply_to: &reply_to,
                        headers: &headers,
                    },
                    &reason,
                ))
                .await;
                drop(registration);
                return;
            }
            let id = request.id.clone();
            let is_initialize = matches!(request.request, ClientRequest::InitializeRequest(_));
            let peer_info = (!is_initialize).then(|| peer_info(&request, route.session.as_ref()));
            let mut reply = self
                .reply(reply_to.clone(), reply_headers(&headers))
                .numbered(request_id.clone());
            // An initialize is not kept for replay: its reply carries the
            // new session id in an attribute, and running it again only
            // issues another.
            if !is_initialize && !self.config.replay_window.is_zero() {
                reply = reply.keeping_final();
            }
            if is_initialize {
                reply.seal_session_with(
                    self.config.session_keys.clone(),
                    SessionState {
                        reply_to: reply_to.clone(),
                        protocol_version: String::new(),
                        client_id: headers.client_id.clone(),
                    },
                );
            }
            let finished = request::run(
                self.factory.make(),
                request,
                peer_info,
                request::Run {
                    reply,
                    inbox: self.inbox.clone(),
                    receipt: delivery.receipt.clone(),
                    received,
                    visibility_ceiling: self.config.visibility_ceiling,
                    timeout: self.config.request_timeout,
                    cancelled: registration.token().clone(),
                    abandon: self.abandon.clone(),
                },
            )
            .await;
            // Kept before the registration goes, so that a duplicate finds
            // the request either running or answered, never neither. A
            // response that could not be sent is kept too: the redelivery
            // replays it instead of running the handler again.
            if matches!(finished.outcome, Outcome::Answered | Outcome::ReplyFailed)
                && let Some(response) = finished.response
            {
                self.replay
                    .keep(key.clone(), response, tokio::time::Instant::now());
            }
            drop(registration);
            match finished.outcome {
                Outcome::Answered | Outcome::Cancelled => self.ack(&delivery).await,
                Outcome::Undeliverable => {
                    tracing::warn!("reply address refuses the response for good; request removed");
                    self.ack(&delivery).await
                }
                Outcome::Abandoned => {
                    if let Err(error) = self.inbox.release(&delivery.receipt).await {
                        tracing::warn!(%error, "could not release request; it reappears after its visibility timeout");
                    }
                }
                Outcome::ReplyFailed => {
                    let last_attempt = self.config.dead_letter.as_ref().is_some_and(|dead_letter| {
                        delivery.receive_count >= dead_letter.max_receive_count
                    });
                    if last_attempt {
                        let reason = format!(
                            "the final response could not be sent on delivery {}",
                            delivery.receive_count
                        );
                        let request = dead_letter::Request {
                            delivery: &delivery,
                            key: &key,
                            id: &id,
                            reply_to: &reply_to,
                            headers: &headers,
                        };
                        Box::pin(self.dead_letter(request, &reason)).await;
                    } else {
                        // Not acked: the request is redelivered soon and
                        // answered then, from the replay cache.
                        self.retry_soon(&delivery).await;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Holds a duplicate of a request that is running here hidden (its own
    /// heartbeat, bounded like the run's) until that run ends. Returns false
    /// when shutdown ran out of grace first; the duplicate is then released
    /// for another replica.
    async fn hold_duplicate(
        &self,
        delivery: &Delivery,
        received: tokio::time::Instant,
        key: &RequestKey,
    ) -> bool {
        let heartbeat = Heartbeat::new(
            self.inbox.clone(),
            delivery.receipt.clone(),
            received,
            self.config.visibility_ceiling,
        );
        let keep_hidden = heartbeat.keep_hidden();
        tokio::pin!(keep_hidden);
        loop {
            // Armed before the check, so an end between the two is not missed.
            let ended = self.inflight.ended();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.inflight.is_running(key) {
                return true;
            }
            tokio::select! {
                () = ended => {}
                () = &mut keep_hidden => {}
                () = self.abandon.cancelled() => {
                    if let Err(error) = self.inbox.release(&delivery.receipt).await {
                        tracing::warn!(%error, "could not release a held duplicate");
                    }
                    return false;
                }
            }
        }
    }

    /// Works out and checks where replies go. `Err` means the message must
    /// not be trusted at all (its session id does not verify).
    fn route(&self, headers: &Headers, init_reply_to: Option<String>) -> Result<Route, String> {
        let session = match headers.session_id.as_deref() {
            Some(id) if init_reply_to.is_none() => Some(
                self.config
                    .session_keys
                    .open(id)
                    .map_err(|error| format!("invalid session id: {error}"))?,
            ),
            // On initialize, a session id the client chose is replaced by ours.
            _ => None,
        };
        let claimed = headers
            .reply_to
            .clone()
            .or(init_reply_to)
            .or_else(|| session.as_ref().map(|s| s.reply_to.clone()));
        let reply_to = match &self.config.shared_reply_address {
            // Set by the operator: trusted, and the same for every request.
            Some(shared) => Ok(shared.clone()),
            None => self
                .config
                .reply_policy
                .check(claimed.as_deref())
                .map_err(|refusal| refusal.to_string()),
        };
        let origin = headers
            .session_id
            .clone()
            .or_else(|| headers.client_id.clone())
            .or_else(|| claimed.clone())
            .unwrap_or_default();
        Ok(Route {
            session,
            reply_to,
            origin,
        })
    }

    /// Answers a message that is refused outright (its signature or session
    /// id does not verify), if the address it names directly (`ReplyTo`) is
    /// allowed, or through the shared reply address; never to an address
    /// from a session.
    ///
    /// Nothing such a message claims is trusted, so the answer is **not
    /// signed and not correlated**: its `id` is `null` and it carries none
    /// of the message's `ClientId`, `SessionId` or `RequestId`. Otherwise
    /// anyone able to send to the request queue could make this (signing)
    /// server fail another client's call by naming its id and reply queue.
    /// The refused id is only shown in `error.data.requestId`, for people
    /// reading the queue.
    ///
    /// Returns how the send went (`Ok` when there is nowhere to send).
    async fn answer_refused(
        &self,
        headers: &Headers,
        id: Option<&RequestId>,
        text: &str,
    ) -> Result<(), ReplyError> {
        let reply_to = match &self.config.shared_reply_address {
            Some(shared) => shared.clone(),
            None => match self.config.reply_policy.check(headers.reply_to.as_deref()) {
                Ok(reply_to) => reply_to,
                Err(_) => return Ok(()),
            },
        };
        let mut error = wire::error_reply(None, ErrorCode::INVALID_REQUEST, text);
        if let Some(id) = id {
            error["error"]["data"] = serde_json::json!({ "requestId": id });
        }
        let mut reply = Reply::new(self.outbox.clone(), reply_to, Headers::default(), None);
        reply.send_value(&error).await
    }

    /// Settles a message whose answer (a result, or an error in its place)
    /// was sent as `sent` says, by the late-ack rule: removed once the
    /// answer is sent, or when it can never be (logged); left for a
    /// redelivery soon when it failed for a passing reason.
    pub(super) async fn settle_answered(&self, delivery: &Delivery, sent: Result<(), ReplyError>) {
        match sent {
            Ok(()) => self.ack(delivery).await,
            Err(error) if error.is_permanent() => {
                tracing::error!(message_id = %delivery.message_id, %error, "the answer can never be sent; message removed");
                self.ack(delivery).await;
            }
            Err(_) => self.retry_soon(delivery).await,
        }
    }

    /// [`settle_answered`](Self::settle_answered) for the error reply to a
    /// message that is never run (invalid or refused): its redelivery only
    /// tries the reply again, so with `dead_letter(_, n)` configured, a
    /// reply that could not be sent on any of `n` deliveries gives up
    /// (logged) rather than retrying for ever.
    async fn settle_error_reply(&self, delivery: &Delivery, sent: Result<(), ReplyError>) {
        let exhausted = self
            .config
            .dead_letter
            .as_ref()
            .is_some_and(|dead_letter| delivery.receive_count >= dead_letter.max_receive_count);
        match sent {
            Err(error) if exhausted && !error.is_permanent() => {
                tracing::error!(message_id = %delivery.message_id, receive_count = delivery.receive_count, %error, "the error reply could not be sent on any allowed delivery; message removed");
                self.ack(delivery).await;
            }
            sent => self.settle_answered(delivery, sent).await,
        }
    }

    /// Leaves a message whose answer could not be sent for a passing reason
    /// to be delivered again after a short backoff (see
    /// [`replay::retry_backoff`]) rather than its whole visibility timeout.
    pub(super) async fn retry_soon(&self, delivery: &Delivery) {
        let backoff =
            replay::retry_backoff(delivery.receive_count, self.inbox.info().visibility_timeout);
        tracing::info!(message_id = %delivery.message_id, ?backoff, "left for redelivery");
        if let Err(error) = self.inbox.extend(&delivery.receipt, backoff).await {
            tracing::warn!(message_id = %delivery.message_id, %error, "could not shorten the visibility; redelivered after the visibility timeout");
        }
    }

    /// A reply to `address`, signed when the server signs.
    pub(super) fn reply(&self, address: String, headers: Headers) -> Reply {
        let signing = self.config.signing.as_ref().map(|s| s.keys.clone());
        Reply::new(self.outbox.clone(), address, headers, signing)
    }

    /// Checks the request's signature as the configuration says. `Err` is
    /// the reason to refuse it.
    fn check_signature(&self, message: &QueueMessage) -> Result<(), String> {
        let Some(signing) = &self.config.signing else {
            return Ok(());
        };
        signing
            .check(message)
            .map_err(|error| format!("message signature refused: {error}"))?;
        // A signed message is also checked for age: its signature proves
        // who sent it, not that it is not an old one sent again.
        if let Some(max_age) = self.config.signature_max_age
            && message.attribute(wire::attr::SIGNATURE).is_some()
        {
            wire::signing::check_fresh(message, std::time::SystemTime::now(), max_age)
                .map_err(|error| format!("message refused: {error}"))?;
        }
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(error) = self.inbox.ack(&delivery.receipt).await {
            tracing::warn!(message_id = %delivery.message_id, %error, "ack failed; the message will be redelivered");
        }
    }
}

/// The id of a request, if the message is one.
fn request_id_of(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    }
}

/// The attributes replies carry: the request's session and client ids.
pub(super) fn reply_headers(request: &Headers) -> Headers {
    Headers {
        session_id: request.session_id.clone(),
        client_id: request.client_id.clone(),
        ..Headers::default()
    }
}

/// What the service needs to know of its peer, rebuilt per request: the
/// version named in the request's `_meta` (2026-07-28), else the one the
/// session negotiated, else 2025-03-26 (as rmcp's stateless HTTP assumes).
fn peer_info(
    request: &JsonRpcRequest<ClientRequest>,
    session: Option<&SessionState>,
) -> InitializeRequestParams {
    let version = request
        .request
        .get_meta()
        .protocol_version()
        .or_else(|| {
            session.and_then(|s| {
                serde_json::from_value(serde_json::Value::String(s.protocol_version.clone())).ok()
            })
        })
        .unwrap_or(ProtocolVersion::V_2025_03_26);
    InitializeRequestParams::new(ClientCapabilities::default(), Implementation::default())
        .with_protocol_version(version)
}

/// A session id is long; its nonce is enough to correlate logs.
fn short(origin: &str) -> &str {
    match origin.split('.').nth(1) {
        Some(nonce) if origin.starts_with("v1.") => nonce,
        _ => origin,
    }
}

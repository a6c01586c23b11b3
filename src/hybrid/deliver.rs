//! The detached half of a webhook call: reads the inner service's answer
//! (an SSE stream, or one JSON body) and POSTs each message of the call to
//! the session's webhook, in order, through the webhook outbox.
//!
//! Each message is sent only after the one before it is delivered (or has
//! failed for good), so progress and log notifications arrive before the
//! result. After a final failure the rest of the call is not tried (the
//! receiver is down or refuses): every undelivered message goes to the
//! dead-letter outbox with the reason, or, without one, is logged as an
//! error with its body. A stream that ends without a result (the session
//! was deleted, the server is stopping) gets a JSON-RPC error delivered in
//! its place, so the caller is never left waiting in silence, unless the
//! client cancelled the call (a cancelled request gets no response).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use futures::StreamExt;
use serde_json::{Value, json};
use sse_stream::SseStream;
use tokio::sync::OwnedSemaphorePermit;

use super::Shared;
use super::sessions::Hook;
use crate::queue::QueueMessage;
use crate::wire::attr;

/// The largest JSON (non-SSE) answer read, in bytes.
const MAX_JSON_ANSWER: usize = 16 * 1024 * 1024;

/// How the inner service answered the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// `text/event-stream`: the call's messages, ending with its result.
    Sse,
    /// `application/json`: the result alone.
    Json,
}

/// One detached call.
#[derive(Debug)]
pub(super) struct Call {
    /// The JSON-RPC id of the `tools/call`.
    pub(super) id: Value,
    /// Its session (`Mcp-Session-Id`).
    pub(super) session: String,
    /// The tool called.
    pub(super) tool: String,
    /// Where its messages go.
    pub(super) hook: Arc<Hook>,
    /// Set when the client cancels it.
    pub(super) cancelled: Arc<AtomicBool>,
}

/// The detached calls, by session and JSON-RPC id, so a client's
/// `notifications/cancelled` can be noted (at most `max_detached` entries).
#[derive(Debug, Default)]
pub(super) struct Calls {
    table: Mutex<HashMap<(String, String), Arc<AtomicBool>>>,
}

impl Calls {
    /// Registers the call `id` of `session`; its cancellation flag.
    pub(super) fn register(&self, session: &str, id: &Value) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.lock()
            .insert((session.to_owned(), id_text(id)), flag.clone());
        flag
    }

    /// Notes that the client cancelled call `id` of `session`.
    pub(super) fn cancel(&self, session: &str, id: &Value) {
        if let Some(flag) = self.lock().get(&(session.to_owned(), id_text(id))) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Forgets a call that ended (unless a later call took its key).
    fn end(&self, call: &Call) {
        let mut table = self.lock();
        let key = (call.session.clone(), id_text(&call.id));
        if table
            .get(&key)
            .is_some_and(|flag| Arc::ptr_eq(flag, &call.cancelled))
        {
            table.remove(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<AtomicBool>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Delivers `call`'s messages read from `body`; the permit, one of the
/// bounded detached calls, is held until the last delivery ends.
pub(super) async fn run(
    shared: Arc<Shared>,
    call: Call,
    answer: Answer,
    body: Body,
    _permit: OwnedSemaphorePermit,
) {
    let mut courier = Courier {
        shared,
        call,
        key: uuid::Uuid::new_v4().simple().to_string(),
        sequence: 0,
        failed: None,
    };
    let answered = match answer {
        Answer::Json => match axum::body::to_bytes(body, MAX_JSON_ANSWER).await {
            Ok(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) => courier.deliver(text).await,
                Err(_) => {
                    tracing::warn!(session = %courier.call.session, "hybrid: the inner JSON answer is not UTF-8");
                    false
                }
            },
            Err(error) => {
                tracing::warn!(session = %courier.call.session, %error, "hybrid: cannot read the inner JSON answer");
                false
            }
        },
        Answer::Sse => courier.relay_sse(body).await,
    };
    courier.shared.calls.end(&courier.call);
    if !answered && courier.call.cancelled.load(Ordering::SeqCst) {
        // A cancelled request gets no response (MCP): its caller gave up.
        tracing::debug!(session = %courier.call.session, call = %id_text(&courier.call.id), "hybrid: cancelled call ended");
    } else if !answered {
        let error = json!({
            "jsonrpc": "2.0",
            "id": courier.call.id,
            "error": {
                "code": -32603,
                "message": "the call ended without a result (its session was closed, or the server stopped or closed its stream)",
            },
        });
        courier.deliver(error.to_string()).await;
    }
}

/// Sends one call's messages in order.
struct Courier {
    shared: Arc<Shared>,
    call: Call,
    /// Unique per call: two calls sharing a JSON-RPC id (two clients, or a
    /// client reusing ids) never share a delivery id, so a receiver that
    /// deduplicates by `webhook-id` never drops one of them.
    key: String,
    sequence: u64,
    /// The final failure that ended deliveries, once there is one.
    failed: Option<String>,
}

impl Courier {
    /// Relays each message event of `body`; true once the result was seen.
    async fn relay_sse(&mut self, body: Body) -> bool {
        let mut events = SseStream::new(body);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(session = %self.call.session, %error, "hybrid: the call's stream broke");
                    return false;
                }
            };
            if event.event.as_deref().is_some_and(|name| name != "message") {
                continue;
            }
            // Priming events carry no data; keep-alives are comments.
            let Some(data) = event.data.filter(|data| !data.trim().is_empty()) else {
                continue;
            };
            if self.deliver(data).await {
                return true;
            }
        }
        false
    }

    /// Delivers one message; true when it was the call's result (a
    /// response or error to the call's id).
    async fn deliver(&mut self, body: String) -> bool {
        self.sequence += 1;
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let method = parsed
            .as_ref()
            .and_then(|message| message.get("method"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let request_id = parsed
            .as_ref()
            .and_then(|message| message.get("id"))
            .cloned();
        let is_result = method.is_none() && request_id.as_ref() == Some(&self.call.id);

        let hook = &self.call.hook;
        let mut message = QueueMessage::new(body)
            .with_string(attr::MCP_SESSION_ID, self.call.session.as_str())
            .with_string(
                attr::DELIVERY_ID,
                format!("msg_{}_{}", self.key, self.sequence),
            )
            .with_string(attr::SEQUENCE, self.sequence.to_string());
        if let Some(client_id) = &hook.client_id {
            message = message.with_string(attr::CLIENT_ID, client_id.as_str());
        }
        // As Python's server: the method on server requests and
        // notifications, the id too on requests; nothing on responses.
        if let Some(method) = &method {
            message = message.with_string(attr::METHOD, method.as_str());
            if let Some(id) = &request_id {
                message = message.with_string(attr::REQUEST_ID, id_text(id));
            }
        }

        if let Some(reason) = &self.failed {
            let reason = format!("not sent: an earlier message of this call failed: {reason}");
            self.dead_letter(message, &reason).await;
            return is_result;
        }
        match self.shared.outbox_send(&hook.url, message.clone()).await {
            Ok(()) => {
                tracing::debug!(session = %self.call.session, call = %id_text(&self.call.id), sequence = self.sequence, "hybrid: delivered to the webhook");
            }
            Err(error) => {
                let reason = format!("webhook {} refused or unreachable: {error}", hook.url);
                self.failed = Some(reason.clone());
                self.dead_letter(message, &reason).await;
            }
        }
        is_result
    }

    /// Hands an undelivered message to the dead-letter outbox, or logs it.
    async fn dead_letter(&self, message: QueueMessage, reason: &str) {
        let call = &self.call;
        let Some((outbox, address)) = &self.shared.dead_letter else {
            tracing::error!(
                session = %call.session, call = %id_text(&call.id), tool = %call.tool,
                webhook = %call.hook.url, %reason, body = %clip(&message.body),
                "hybrid: webhook delivery failed and no dead-letter outbox is set: message dropped"
            );
            return;
        };
        let moved = message
            .with_string(attr::DEAD_LETTER_REASON, reason)
            .with_string(attr::REPLY_TO, call.hook.url.as_str())
            .for_destination(address, "asyncmcp-dead-letters");
        let body = moved.body.clone();
        match outbox.send(address, moved).await {
            Ok(()) => tracing::warn!(
                session = %call.session, call = %id_text(&call.id), tool = %call.tool,
                webhook = %call.hook.url, %reason, dead_letter = %address,
                "hybrid: webhook delivery failed: message dead-lettered"
            ),
            Err(error) => tracing::error!(
                session = %call.session, call = %id_text(&call.id), tool = %call.tool,
                webhook = %call.hook.url, %reason, %error, body = %clip(&body),
                "hybrid: webhook delivery failed and so did the dead-letter send: message dropped"
            ),
        }
    }
}

/// A JSON-RPC id as Python's `str(id)`: a string bare, a number as digits.
fn id_text(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// At most 2 KiB of `text`, for a log line.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(2048);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

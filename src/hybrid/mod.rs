//! The StreamableHTTP+webhook hybrid (feature `hybrid`): MCP Streamable HTTP
//! whose calls of chosen tools are answered at the caller's webhook.
//!
//! [`HybridLayer`] is a tower layer in front of rmcp's
//! [`StreamableHttpService`](rmcp::transport::streamable_http_server::StreamableHttpService)
//! (or any service speaking Streamable HTTP with sessions), so the server
//! stays an ordinary rmcp `ServerHandler`. It speaks Python asyncmcp 0.2.1's
//! StreamableHTTP+webhook wire:
//!
//! * **`initialize`** carries the caller's webhook in
//!   `params._meta.webhookUrl`. The layer checks it against the outbox's
//!   [`WebhookPolicy`](crate::queue::webhook::WebhookPolicy) (prefixes,
//!   scheme, literal addresses; the resolved address is checked again at
//!   every connection). A refused URL refuses the `initialize`: `400` with a
//!   JSON-RPC error `-32602` naming the reason, and no session is made (a
//!   client that asked for webhooks learns at once that it will not get
//!   them). An accepted one is remembered under the `Mcp-Session-Id` the
//!   inner service answers with, in a bounded table
//!   ([`max_sessions`](HybridBuilder::max_sessions)), until the session is
//!   deleted (`DELETE`) or the inner service answers `404` for it.
//! * **`tools/call` of a webhook tool** ([`webhook_tools`](HybridBuilder::webhook_tools)
//!   by name, or [`webhook_tools_marked`](HybridBuilder::webhook_tools_marked)
//!   by a `_meta` marker in the tool's definition)
//!   in a session with a webhook: the request goes to the inner service; once
//!   its answer's head arrives (so session errors, `400`/`404`, pass through
//!   unchanged) the caller gets `202 Accepted` and the HTTP exchange ends. A
//!   detached task reads the call's stream and POSTs each of its messages
//!   (progress and log notifications, server requests, then the result), in
//!   order, to the webhook through the [`WebhookOutbox`]: its retries,
//!   per-origin limits, SSRF guard and signing. Headers as Python's:
//!   `Mcp-Session-Id`, `X-Client-ID` when the client sent one, `X-Method` on
//!   notifications and requests, `X-Request-ID` on requests; plus
//!   `X-Sequence` (1, 2, … within the call). A delivery that fails for good
//!   goes, with the rest of the call, to the
//!   [dead-letter outbox](HybridBuilder::dead_letter) with the reason (or is
//!   logged as an error with its body); a stream ending without a result
//!   gets a JSON-RPC error delivered instead, unless the client cancelled
//!   the call (`notifications/cancelled` in its session). At most
//!   [`max_detached`](HybridBuilder::max_detached) calls are detached at
//!   once; beyond that the call is refused `503` with `Retry-After` before it
//!   runs.
//! * **A webhook tool in a session without a webhook** (none named, or its
//!   entry forgotten when the table was full) is answered like any tool, on
//!   the POST's own stream. Nothing is lost; Python asyncmcp drops such a
//!   result.
//! * **Everything else** passes through untouched.
//!
//! Webhooks need sessions: rmcp's default (`legacy_session_mode`) mints
//! them; a stateless service mints none, and the layer then changes nothing.
//!
//! Python keeps the POST's stream of a webhook call open, unanswered, until
//! the session ends; here it ends at once. The threat notes are in
//! docs/guarantees.md ("The StreamableHTTP+webhook hybrid").

mod deliver;
mod sessions;

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

use crate::queue::webhook::WebhookOutbox;
use crate::queue::{Outbox, QueueError, QueueMessage};
use crate::wire::attr;
use deliver::{Answer, Call, Calls};
use sessions::{Hook, Sessions};

/// The session header of MCP Streamable HTTP.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The tool `_meta` key marking a webhook tool (value `true`); see
/// [`HybridBuilder::webhook_tools_marked`].
pub const WEBHOOK_TOOL_META: &str = "asyncmcp/webhook";
/// How many sessions' webhooks are remembered by default.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// How many webhook calls may be detached at once by default.
pub const DEFAULT_MAX_DETACHED: usize = 256;
/// The largest request body read by default (rmcp's own limit).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// The longest webhook URL accepted.
const MAX_URL_LEN: usize = 2048;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a [`HybridLayer`].
pub struct HybridBuilder {
    outbox: WebhookOutbox,
    tools: HashSet<String>,
    max_sessions: usize,
    max_detached: usize,
    max_body: usize,
    retry_after: Duration,
    dead_letter: Option<DeadLetter>,
}

impl fmt::Debug for HybridBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridBuilder")
            .field("tools", &self.tools)
            .field("max_sessions", &self.max_sessions)
            .field("max_detached", &self.max_detached)
            .field(
                "dead_letter",
                &self.dead_letter.as_ref().map(|(_, address)| address),
            )
            .finish_non_exhaustive()
    }
}

impl HybridBuilder {
    /// Answers calls of these tools at the caller's webhook (by name, as
    /// Python asyncmcp's `webhook_tools`).
    pub fn webhook_tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tools.extend(tools.into_iter().map(Into::into));
        self
    }

    /// Answers calls of the tools among `tools` whose `_meta` has
    /// [`WEBHOOK_TOOL_META`] set to `true` at the caller's webhook, e.g. the
    /// tools of an rmcp `ToolRouter` (`router.list_all()`). The marker is in
    /// the tool's own definition, so clients see in `tools/list` which tools
    /// answer at their webhook.
    pub fn webhook_tools_marked<'a, I>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = &'a rmcp::model::Tool>,
    {
        for tool in tools {
            let marked = tool
                .meta
                .as_ref()
                .and_then(|meta| meta.0.get(WEBHOOK_TOOL_META))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if marked {
                self.tools.insert(tool.name.to_string());
            }
        }
        self
    }

    /// Remembers the webhooks of at most `sessions` sessions (default
    /// [`DEFAULT_MAX_SESSIONS`]); the least recently used is forgotten first.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self
    }

    /// Detaches at most `calls` webhook calls at once (default
    /// [`DEFAULT_MAX_DETACHED`]); more are refused `503`.
    pub fn max_detached(mut self, calls: usize) -> Self {
        self.max_detached = calls;
        self
    }

    /// Reads request bodies up to `bytes` (default [`DEFAULT_MAX_BODY`]);
    /// larger ones are refused `413`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The `Retry-After` of a refused call (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Sends messages that could not be delivered to `address` through
    /// `outbox`, each with a `DeadLetterReason` and the webhook as `ReplyTo`.
    pub fn dead_letter(mut self, outbox: Arc<dyn Outbox>, address: impl Into<String>) -> Self {
        self.dead_letter = Some((outbox, address.into()));
        self
    }

    /// The layer.
    pub fn build(self) -> HybridLayer {
        HybridLayer {
            shared: Arc::new(Shared {
                outbox: self.outbox,
                tools: self.tools,
                sessions: Sessions::new(self.max_sessions),
                calls: Calls::default(),
                detached: Arc::new(Semaphore::new(self.max_detached)),
                max_detached: self.max_detached,
                max_body: self.max_body,
                retry_after: self.retry_after,
                dead_letter: self.dead_letter,
            }),
        }
    }
}

/// The dead-letter outbox and address.
type DeadLetter = (Arc<dyn Outbox>, String);

/// What every clone of the layer and its services share.
struct Shared {
    outbox: WebhookOutbox,
    tools: HashSet<String>,
    sessions: Sessions,
    calls: Calls,
    detached: Arc<Semaphore>,
    max_detached: usize,
    max_body: usize,
    retry_after: Duration,
    dead_letter: Option<DeadLetter>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("tools", &self.tools)
            .field("sessions", &self.sessions.len())
            .field("detached_free", &self.detached.available_permits())
            .field(
                "dead_letter",
                &self.dead_letter.as_ref().map(|(_, address)| address),
            )
            .finish_non_exhaustive()
    }
}

impl Shared {
    async fn outbox_send(&self, url: &str, message: QueueMessage) -> Result<(), QueueError> {
        self.outbox.send(url, message).await
    }
}

/// Answers calls of webhook tools at the caller's webhook; see the
/// [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct HybridLayer {
    shared: Arc<Shared>,
}

impl HybridLayer {
    /// A builder delivering through `outbox` (its policy also checks each
    /// `initialize`'s webhook URL).
    pub fn builder(outbox: WebhookOutbox) -> HybridBuilder {
        HybridBuilder {
            outbox,
            tools: HashSet::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_detached: DEFAULT_MAX_DETACHED,
            max_body: DEFAULT_MAX_BODY,
            retry_after: Duration::from_secs(1),
            dead_letter: None,
        }
    }

    /// How many sessions have a webhook remembered.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.len()
    }

    /// How many webhook calls are detached now.
    pub fn detached(&self) -> usize {
        // Permits are only taken, never added, so this cannot underflow.
        self.shared.max_detached - self.shared.detached.available_permits()
    }
}

impl<S> Layer<S> for HybridLayer {
    type Service = Hybrid<S>;

    fn layer(&self, inner: S) -> Hybrid<S> {
        Hybrid {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`HybridLayer`] makes around a Streamable HTTP service.
#[derive(Debug, Clone)]
pub struct Hybrid<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Hybrid<S>
where
    S: Service<Request<Body>, Response = Response<ResB>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    ReqB: HttpBody<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: HttpBody<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The ready clone goes into the future; a fresh clone stays (tower's
        // rule for services that are driven after `poll_ready`).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move { Ok(handle(inner, shared, request).await) })
    }
}

/// What a POST's body is, as far as the hybrid cares.
enum Kind {
    /// `initialize` naming a webhook.
    Initialize { id: Value, url: String },
    /// `tools/call` of a webhook tool.
    WebhookCall { id: Value, tool: String },
    /// `notifications/cancelled` of request `id`.
    Cancel { id: Value },
    /// Anything else.
    Other,
}

fn classify(body: &[u8], tools: &HashSet<String>) -> Kind {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return Kind::Other;
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Kind::Other;
    };
    let params = message.get("params");
    if method == "notifications/cancelled" {
        return match params.and_then(|params| params.get("requestId")) {
            Some(id) => Kind::Cancel { id: id.clone() },
            None => Kind::Other,
        };
    }
    let Some(id) = message.get("id") else {
        return Kind::Other;
    };
    match method {
        "initialize" => {
            let url = params
                .and_then(|params| params.get("_meta"))
                .and_then(|meta| meta.get(attr::META_WEBHOOK_URL))
                .and_then(Value::as_str);
            match url {
                Some(url) => Kind::Initialize {
                    id: id.clone(),
                    url: url.to_owned(),
                },
                None => Kind::Other,
            }
        }
        "tools/call" => match params
            .and_then(|params| params.get("name"))
            .and_then(Value::as_str)
        {
            Some(tool) if tools.contains(tool) => Kind::WebhookCall {
                id: id.clone(),
                tool: tool.to_owned(),
            },
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

async fn forward<S, ResB>(mut inner: S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResB>, Error = Infallible>,
    ResB: HttpBody<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    match inner.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

fn session_of<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn handle<S, ReqB, ResB>(
    inner: S,
    shared: Arc<Shared>,
    request: Request<ReqB>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResB>, Error = Infallible>,
    ReqB: HttpBody<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: HttpBody<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let session = session_of(&request);
    if request.method() != Method::POST {
        let deleting = request.method() == Method::DELETE;
        let response = forward(inner, request.map(Body::new)).await;
        if let Some(session) = &session
            && (session_gone(&response) || deleting && response.status().is_success())
        {
            shared.sessions.forget(session);
        }
        return response;
    }

    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, shared.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        Err(error) => {
            tracing::debug!(%error, "hybrid: cannot read a request body");
            return plain(StatusCode::BAD_REQUEST, "cannot read the request body");
        }
    };
    let kind = classify(&bytes, &shared.tools);
    let client_id = parts
        .headers
        .get("x-client-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(256).collect::<String>());
    let request = Request::from_parts(parts, Body::from(bytes));
    if let (Kind::Cancel { id }, Some(session)) = (&kind, &session) {
        // Its stream will end without a result: nothing to report then.
        shared.calls.cancel(session, id);
    }

    match (kind, session) {
        // Only a new session gets a webhook: an `initialize` naming a
        // session (re-initializing, or forging another's id) changes none.
        (Kind::Initialize { id, url }, None) => {
            if let Err(reason) = check_url(&shared, &url) {
                tracing::info!(%reason, "hybrid: initialize refused: webhook URL not allowed");
                return jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    -32602,
                    &format!("params._meta.webhookUrl refused: {reason}"),
                    None,
                );
            }
            let response = forward(inner, request).await;
            let minted = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|value| value.to_str().ok());
            if response.status().is_success()
                && let Some(minted) = minted
            {
                shared
                    .sessions
                    .insert(minted.to_owned(), Hook { url, client_id });
            }
            response
        }
        (Kind::WebhookCall { id, tool }, Some(session)) => {
            let Some(hook) = shared.sessions.get(&session) else {
                return forward(inner, request).await;
            };
            let Ok(permit) = shared.detached.clone().try_acquire_owned() else {
                tracing::warn!(%session, %tool, "hybrid: too many detached webhook calls; refusing one");
                return jsonrpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &id,
                    -32000,
                    "too many webhook calls in flight; retry later",
                    Some(shared.retry_after),
                );
            };
            let response = forward(inner, request).await;
            let answer = answer_of(&response);
            let (Some(answer), true) = (answer, response.status() == StatusCode::OK) else {
                if session_gone(&response) {
                    shared.sessions.forget(&session);
                }
                return response;
            };
            let body = response.into_body();
            let mut accepted = Response::new(Body::empty());
            *accepted.status_mut() = StatusCode::ACCEPTED;
            if let Ok(value) = HeaderValue::from_str(&session) {
                accepted.headers_mut().insert(SESSION_HEADER, value);
            }
            let cancelled = shared.calls.register(&session, &id);
            let call = Call {
                id,
                session,
                tool,
                hook,
                cancelled,
            };
            tokio::spawn(deliver::run(shared.clone(), call, answer, body, permit));
            accepted
        }
        (_, session) => {
            let response = forward(inner, request).await;
            if let Some(session) = session
                && session_gone(&response)
            {
                shared.sessions.forget(&session);
            }
            response
        }
    }
}

/// Whether `url` may be a session's webhook (the connection-time address
/// check comes on every delivery).
fn check_url(shared: &Shared, url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    shared
        .outbox
        .policy()
        .check_url(url)
        .map(drop)
        .map_err(|error| error.to_string())
}

/// Whether `response` says its session is unknown: a `404` that is not a
/// JSON-RPC error (rmcp answers an unknown session `404` in plain text; a
/// `404` with a JSON-RPC body is an unknown method on the stateless path).
fn session_gone(response: &Response<Body>) -> bool {
    response.status() == StatusCode::NOT_FOUND && answer_of(response) != Some(Answer::Json)
}

/// How the inner service answered a call, when it is a stream or body the
/// hybrid can relay.
fn answer_of(response: &Response<Body>) -> Option<Answer> {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let essence = content_type.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Some(Answer::Sse)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Answer::Json)
    } else {
        None
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn jsonrpc_error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    retry_after: Option<Duration>,
) -> Response<Body> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = retry_after {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::webhook::WebhookPolicy;
    use rmcp::model::{MetaObject, Tool};

    fn tool(name: &'static str, meta: Option<Value>) -> Tool {
        let tool = Tool::new(name, "a tool", Arc::new(serde_json::Map::new()));
        match meta {
            Some(Value::Object(meta)) => tool.with_meta(MetaObject(meta)),
            _ => tool,
        }
    }

    #[test]
    fn tools_marked_in_their_meta_are_webhook_tools() {
        let outbox = WebhookOutbox::builder(WebhookPolicy::prefixes(["https://"]))
            .build()
            .expect("an outbox");
        let tools = [
            tool("marked", Some(json!({WEBHOOK_TOOL_META: true}))),
            tool("false", Some(json!({WEBHOOK_TOOL_META: false}))),
            tool("text", Some(json!({WEBHOOK_TOOL_META: "yes"}))),
            tool("other", Some(json!({"other": true}))),
            tool("bare", None),
        ];
        let builder = HybridLayer::builder(outbox)
            .webhook_tools(["named"])
            .webhook_tools_marked(&tools);
        let mut names: Vec<&str> = builder.tools.iter().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["marked", "named"]);
    }

    #[test]
    fn only_webhook_tools_calls_and_webhook_initializes_are_picked_out() {
        let tools: HashSet<String> = ["slow".to_owned()].into();
        let kind = |body: Value| classify(body.to_string().as_bytes(), &tools);
        assert!(matches!(
            kind(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}})),
            Kind::WebhookCall { .. }
        ));
        for other in [
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fast"}}),
            json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"slow"}}),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}),
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"_meta":{"webhookUrl":7}}}),
            json!([{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}]),
        ] {
            assert!(matches!(kind(other.clone()), Kind::Other), "{other}");
        }
        assert!(matches!(
            kind(json!({"jsonrpc":"2.0","id":0,"method":"initialize",
                "params":{"_meta":{"webhookUrl":"https://x/"}}})),
            Kind::Initialize { .. }
        ));
        assert!(matches!(
            kind(json!({"jsonrpc":"2.0","method":"notifications/cancelled",
                "params":{"requestId":3}})),
            Kind::Cancel { .. }
        ));
        assert!(matches!(classify(b"not json", &tools), Kind::Other));
    }
}

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

mod builder;
mod deliver;
mod route;
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
use axum::http::{Request, Response};
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

use crate::queue::webhook::WebhookOutbox;
use crate::queue::{Outbox, QueueError, QueueMessage};
use deliver::Calls;
use sessions::Sessions;

pub use builder::HybridBuilder;

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
        HybridBuilder::new(outbox)
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
        Box::pin(async move { Ok(route::handle(inner, shared, request).await) })
    }
}

//! [`WebhookClientTransport`] (feature `webhook`): an rmcp client transport
//! that POSTs requests to a server over HTTP and receives the replies on an
//! HTTP receiver of its own.
//!
//! The wire is Python asyncmcp 0.2.1's webhook transport. Every client
//! message is `POST`ed to the server's URL (path `/mcp/request` when the URL
//! names none) with `X-Client-ID`, and `X-Session-ID` and
//! `X-Protocol-Version` once the session is up, `X-Request-ID` on requests
//! and `X-Method` on requests and notifications. `initialize` carries the
//! receiver's URL in `params._meta.webhookUrl`; the server answers that POST
//! with `{"status":"session_created","session_id":…}` (and an `X-Session-ID`
//! header), and POSTs every reply, the initialize result included, to the
//! receiver. Replies numbered by `X-Request-ID` / `X-Sequence` (as this
//! crate's webhook outbox sends them) are put back in order like a queue
//! client's; others pass straight through. [`close`](rmcp::transport::Transport::close)
//! stops the receiver and ends the session with a `DELETE` carrying
//! `X-Session-ID`.
//!
//! A POST that fails (the server unreachable, or answering other than 2xx)
//! fails the request it carried at once, with the status and the start of
//! the answer.
//!
//! # Who can POST to the receiver
//!
//! Anyone who can reach its address. A forged delivery could hand rmcp a
//! made-up result for a pending request (a wrong answer taken for the
//! server's), a fake notification, or a server request (sampling,
//! elicitation) the client then acts on. What stops it:
//!
//! * **The bind address**: `127.0.0.1:0` by default, reachable from this
//!   host only. Bind wider only when the server is elsewhere.
//! * **An unguessable path**: by default `/mcp/webhook/<128 random bits>`;
//!   only the server, which was told the URL, knows it. A POST elsewhere
//!   gets 404. Over plain HTTP the path travels in clear text: put the
//!   receiver behind TLS (see [`public_url`](WebhookClientBuilder::public_url))
//!   when the network between is not trusted.
//! * **Signatures**: with a [`verifier`](WebhookClientBuilder::verifier),
//!   every delivery must carry a valid Standard Webhooks signature made with
//!   the shared secret, within the timestamp tolerance, and each
//!   `webhook-id` is taken once; unsigned, tampered and stale deliveries get
//!   401, a replayed one is dropped. Python asyncmcp's server signs nothing,
//!   so against it this stays off; against this crate's servers turn it on.
//! * **Signatures**, the other way: with a [`signer`](WebhookClientBuilder::signer)
//!   every POST (and the closing DELETE) to the server carries Standard
//!   Webhooks headers, for a server whose inbox checks them (this crate's
//!   `WebhookInbox` with a verifier). Each POST gets a fresh `webhook-id`:
//!   the client does not resend, so there is nothing to deduplicate.
//! * **The session**: once the session is known, a delivery naming another
//!   (`X-Session-ID`) is refused (409); this catches misrouted deliveries,
//!   not forgeries (a forger can leave the header out).
//!
//! Bodies are bounded ([`max_body`](WebhookClientBuilder::max_body), 413
//! past it) and garbage gets 400; neither reaches rmcp.
//!
//! ```no_run
//! # use asyncmcp::client::WebhookClientTransport;
//! # use rmcp::ServiceExt;
//! # async fn demo() -> anyhow::Result<()> {
//! let transport = WebhookClientTransport::builder("http://127.0.0.1:8000")
//!     .bind(([127, 0, 0, 1], 0).into())
//!     .start()
//!     .await?;
//! let client = ().serve(transport).await?;
//! let tools = client.list_all_tools().await?;
//! client.cancel().await?;
//! # Ok(()) }
//! ```

mod receiver;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Url};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::order::{Received, Reorder};
use crate::queue::webhook::signing::unix_now;
use crate::queue::webhook::{HttpLimits, SecretError, WebhookSigner, WebhookVerifier};

/// The server path used when the server URL names none (Python's default).
pub const DEFAULT_SERVER_PATH: &str = "/mcp/request";

/// The default limit on a delivery's body.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How much of a server's answer to a POST is read.
const MAX_ANSWER: usize = 64 * 1024;

/// How long closing waits for open deliveries to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Errors of the webhook client transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookClientError {
    /// The server URL is not an absolute `http(s)` URL.
    #[error("invalid server URL {url:?}: {reason}")]
    ServerUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receiver path does not start with `/`.
    #[error("invalid receiver path {0:?}: it must start with '/'")]
    Path(String),
    /// The receiver could not listen.
    #[error("binding the webhook receiver to {address}: {source}")]
    Bind {
        /// The address it tried.
        address: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be made, or a POST failed on the way.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered a POST with other than 2xx.
    #[error("the server answered HTTP {status}: {answer}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        answer: String,
    },
    /// A message could not be encoded.
    #[error("encoding a message: {0}")]
    Encode(#[from] serde_json::Error),
    /// A POST could not be signed.
    #[error("signing a request: {0}")]
    Sign(#[from] SecretError),
}

/// Settings of a [`WebhookClientTransport`]; set them through its
/// [builder](WebhookClientTransport::builder).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookClientConfig {
    /// Where requests are POSTed. A URL with no path gets
    /// [`DEFAULT_SERVER_PATH`].
    pub server_url: String,
    /// Where the receiver listens. Default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// The receiver's path. Default `/mcp/webhook/<32 random hex digits>`.
    pub path: String,
    /// The URL the server is told to POST replies to (`_meta.webhookUrl`),
    /// when it is not `http://<bound address><path>`: e.g. a TLS-terminating
    /// proxy in front of the receiver.
    pub public_url: Option<String>,
    /// The name this client's connections are known by; each connection
    /// sends `X-Client-ID` = `<client_id>.<16 random hex digits>`. Default a
    /// random UUID.
    pub client_id: String,
    /// The largest delivery body accepted. Default [`DEFAULT_MAX_BODY`].
    pub max_body: usize,
    /// How long a reply that overtook notifications of its request waits for
    /// them. Default 1 s.
    pub order_wait: Duration,
    /// Timeout of each POST (and of the closing DELETE). Default 30 s.
    pub request_timeout: Duration,
}

impl WebhookClientConfig {
    /// Defaults for a client of the server at `server_url`.
    pub fn new(server_url: impl Into<String>) -> Self {
        Self {
            server_url: server_url.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            path: format!("/mcp/webhook/{}", uuid::Uuid::new_v4().simple()),
            public_url: None,
            client_id: uuid::Uuid::new_v4().to_string(),
            max_body: DEFAULT_MAX_BODY,
            order_wait: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds a [`WebhookClientTransport`]; [`start`](Self::start) binds the
/// receiver.
pub struct WebhookClientBuilder {
    config: WebhookClientConfig,
    verifier: Option<WebhookVerifier>,
    signer: Option<WebhookSigner>,
}

impl std::fmt::Debug for WebhookClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClientBuilder")
            .field("config", &self.config)
            .field("verifier", &self.verifier)
            .field("signer", &self.signer)
            .finish()
    }
}

impl WebhookClientBuilder {
    /// Sets where the receiver listens; port 0 picks a free one.
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.config.bind = address;
        self
    }
    /// Sets the receiver's path (it must start with `/`); see
    /// [`WebhookClientConfig::path`].
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }
    /// Sets the URL the server is told to POST replies to; see
    /// [`WebhookClientConfig::public_url`].
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.config.public_url = Some(url.into());
        self
    }
    /// Sets the name this client's connections are known by.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.config.client_id = client_id.into();
        self
    }
    /// Sets the largest delivery body accepted (at least 1 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.config.max_body = bytes.max(1024);
        self
    }
    /// Sets how long a reply waits for notifications it overtook.
    pub fn order_wait(mut self, wait: Duration) -> Self {
        self.config.order_wait = wait;
        self
    }
    /// Sets the timeout of each POST.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }
    /// Accepts only deliveries signed for `verifier` (Standard Webhooks);
    /// see the [module docs](self).
    pub fn verifier(mut self, verifier: WebhookVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }
    /// Signs every POST and DELETE to the server with `signer` (Standard
    /// Webhooks), for a server that checks signatures.
    pub fn signer(mut self, signer: WebhookSigner) -> Self {
        self.signer = Some(signer);
        self
    }
    /// The settings so far.
    pub fn config(&self) -> &WebhookClientConfig {
        &self.config
    }

    /// Binds the receiver and returns the transport, ready for
    /// `().serve(transport)`.
    pub async fn start(self) -> Result<WebhookClientTransport, WebhookClientError> {
        let config = self.config;
        let server_url = server_url(&config.server_url)?;
        if !config.path.starts_with('/') {
            return Err(WebhookClientError::Path(config.path));
        }
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| WebhookClientError::Bind {
                address: config.bind,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| WebhookClientError::Bind {
                address: config.bind,
                source,
            })?;
        let webhook_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}{}", config.path));
        // No proxy (the server URL is reached directly) and no redirects (a
        // redirect would resend the request somewhere the user never named).
        let http = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .build()?;
        let shared = Arc::new(Shared {
            http,
            server_url,
            webhook_url,
            client_id: super::connection_id(&config.client_id),
            signer: self.signer,
            session: Mutex::default(),
        });
        let (sender, incoming) = mpsc::channel(256);
        let state = Arc::new(receiver::ReceiverState {
            shared: shared.clone(),
            verifier: self.verifier.map(Arc::new),
            sender,
        });
        let app = receiver::router(&config.path, config.max_body, state);
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        // Bounded connections and read timeouts: the receiver may face
        // more than the server it expects.
        let serving = tokio::spawn(crate::queue::webhook::serve(
            listener,
            app,
            HttpLimits::default(),
            shutdown,
        ));
        tracing::debug!(%local_addr, "webhook receiver listening");
        Ok(WebhookClientTransport {
            shared,
            local_addr,
            incoming,
            order: Reorder::new(config.order_wait),
            stop,
            serving: Some(serving),
        })
    }
}

/// Parses the server URL, giving it the default path when it names none.
fn server_url(text: &str) -> Result<Url, WebhookClientError> {
    let invalid = |reason: String| WebhookClientError::ServerUrl {
        url: text.to_owned(),
        reason,
    };
    let mut url = Url::parse(text).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(DEFAULT_SERVER_PATH);
    }
    Ok(url)
}

/// What the session has learnt from the server.
#[derive(Debug, Default)]
struct Session {
    id: Option<String>,
    protocol_version: Option<String>,
}

/// What the sending side and the receiver share.
pub(super) struct Shared {
    http: Client,
    server_url: Url,
    webhook_url: String,
    client_id: String,
    signer: Option<WebhookSigner>,
    session: Mutex<Session>,
}

impl Shared {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn session_id(&self) -> Option<String> {
        self.session().id.clone()
    }

    /// Takes `id` as the session's, unless one is known already or it could
    /// not be sent back as a header.
    fn adopt_session(&self, id: &str) {
        if !is_visible_ascii(id) {
            tracing::warn!("ignoring a session id that is not visible ASCII");
            return;
        }
        let mut session = self.session();
        if session.id.is_none() {
            session.id = Some(id.to_owned());
        }
    }

    /// Records what an initialize response told: the protocol version, and
    /// the session (its `X-Session-ID`) if none is known yet.
    pub(super) fn initialized(&self, session_id: Option<&str>, protocol_version: String) {
        if let Some(id) = session_id {
            self.adopt_session(id);
        }
        if is_visible_ascii(&protocol_version) {
            self.session().protocol_version = Some(protocol_version);
        }
    }

    /// POSTs `message` to the server.
    async fn send(&self, message: ClientJsonRpcMessage) -> Result<(), WebhookClientError> {
        let mut value = serde_json::to_value(&message)?;
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let is_initialize = method.as_deref() == Some("initialize");
        if is_initialize {
            add_webhook_url(&mut value, &self.webhook_url);
        }
        let mut request = self
            .http
            .post(self.server_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("X-Client-ID", &self.client_id);
        {
            let session = self.session();
            if let Some(id) = &session.id {
                request = request.header("X-Session-ID", id);
            }
            if let Some(version) = &session.protocol_version {
                request = request.header("X-Protocol-Version", version);
            }
        }
        if let Some(id) = value.get("id").filter(|_| method.is_some()) {
            let id = match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if is_visible_ascii(&id) {
                request = request.header("X-Request-ID", id);
            }
        }
        if let Some(method) = method.filter(|m| is_visible_ascii(m)) {
            request = request.header("X-Method", method);
        }
        let body = serde_json::to_string(&value)?;
        request = self.sign(request, &body)?;
        let response = request.body(body).send().await?;
        let status = response.status();
        let header_session = response
            .headers()
            .get("x-session-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let answer = read_bounded(response).await;
        if !status.is_success() {
            return Err(WebhookClientError::Status {
                status: status.as_u16(),
                answer: String::from_utf8_lossy(&answer).chars().take(500).collect(),
            });
        }
        if is_initialize {
            // `{"status":"session_created","session_id":…}`, and the same id
            // in X-Session-ID.
            let created = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|body| {
                    body.get("session_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            if let Some(id) = created.or(header_session) {
                self.adopt_session(&id);
            }
        }
        Ok(())
    }

    /// Adds the signature headers of `body` to `request`, with a signer.
    fn sign(
        &self,
        mut request: reqwest::RequestBuilder,
        body: &str,
    ) -> Result<reqwest::RequestBuilder, SecretError> {
        if let Some(signer) = &self.signer {
            let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
            for (name, value) in signer.headers(&id, unix_now(), body)? {
                request = request.header(name, value);
            }
        }
        Ok(request)
    }

    /// Ends the session at the server (`DELETE` with `X-Session-ID`), if one
    /// was made.
    async fn delete_session(&self) {
        let Some(id) = self.session_id() else {
            return;
        };
        let request = self
            .http
            .delete(self.server_url.clone())
            .header("X-Client-ID", &self.client_id)
            .header("X-Session-ID", id);
        let request = match self.sign(request, "") {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(%error, "cannot sign the end of the session");
                return;
            }
        };
        let sent = request.send().await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::debug!(status = %response.status(), "the server refused ending the session")
            }
            Err(error) => tracing::debug!(%error, "ending the session at the server failed"),
        }
    }
}

/// Puts `url` in `params._meta.webhookUrl` of an initialize request.
fn add_webhook_url(value: &mut Value, url: &str) {
    let Some(message) = value.as_object_mut() else {
        return;
    };
    let params = message
        .entry("params")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(params) = params.as_object_mut() else {
        return;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("webhookUrl".into(), Value::String(url.to_owned()));
    }
}

/// Reads at most [`MAX_ANSWER`] bytes of a server's answer.
async fn read_bounded(mut response: reqwest::Response) -> Vec<u8> {
    let mut answer = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER - answer.len();
        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if answer.len() >= MAX_ANSWER {
            break;
        }
    }
    answer
}

/// Whether `text` can be sent as a header value as it is.
fn is_visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// An rmcp client transport over webhooks. See the [module docs](self).
pub struct WebhookClientTransport {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<Received>,
    order: Reorder,
    stop: CancellationToken,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for WebhookClientTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClientTransport")
            .field("client_id", &self.shared.client_id)
            .field("server_url", &self.shared.server_url.as_str())
            .field("local_addr", &self.local_addr)
            .field("session_id", &self.shared.session_id())
            .finish_non_exhaustive()
    }
}

impl WebhookClientTransport {
    /// Starts building a client of the server at `server_url`.
    pub fn builder(server_url: impl Into<String>) -> WebhookClientBuilder {
        WebhookClientBuilder {
            config: WebhookClientConfig::new(server_url),
            verifier: None,
            signer: None,
        }
    }

    /// Where the receiver listens (with the port chosen, when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL the server is told to POST replies to.
    pub fn webhook_url(&self) -> &str {
        &self.shared.webhook_url
    }

    /// A handle that reads this connection's ids after the transport has
    /// moved into rmcp.
    pub fn handle(&self) -> WebhookClientHandle {
        WebhookClientHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops the receiver: no more connections; open deliveries get
    /// [`CLOSE_WAIT`] to finish.
    async fn stop_receiver(&mut self) {
        self.stop.cancel();
        if let Some(mut serving) = self.serving.take()
            && tokio::time::timeout(CLOSE_WAIT, &mut serving)
                .await
                .is_err()
        {
            serving.abort();
        }
    }
}

/// Reads a [`WebhookClientTransport`]'s ids, e.g. once it serves rmcp.
#[derive(Clone)]
pub struct WebhookClientHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebhookClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClientHandle")
            .field("client_id", &self.shared.client_id)
            .field("session_id", &self.shared.session_id())
            .finish()
    }
}

impl WebhookClientHandle {
    /// This connection's `X-Client-ID`.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }
    /// The session id the server issued, once `initialize` was answered.
    pub fn session_id(&self) -> Option<String> {
        self.shared.session_id()
    }
    /// The URL requests are POSTed to.
    pub fn server_url(&self) -> &str {
        self.shared.server_url.as_str()
    }
    /// The URL the server is told to POST replies to.
    pub fn webhook_url(&self) -> &str {
        &self.shared.webhook_url
    }
}

impl Transport<RoleClient> for WebhookClientTransport {
    type Error = WebhookClientError;

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
        let first = self.serving.is_some();
        self.stop_receiver().await;
        if first {
            self.shared.delete_session().await;
        }
        Ok(())
    }
}

impl Drop for WebhookClientTransport {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_without_a_path_gets_the_default_one() {
        let url = server_url("http://127.0.0.1:8000").expect("valid");
        assert_eq!(url.as_str(), "http://127.0.0.1:8000/mcp/request");
        let url = server_url("https://mcp.example/custom/path").expect("valid");
        assert_eq!(url.path(), "/custom/path");
        assert!(server_url("ftp://example/").is_err());
        assert!(server_url("not a url").is_err());
    }

    #[test]
    fn initialize_carries_the_webhook_url_beside_other_meta() {
        let mut value = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize",
            "params":{"protocolVersion":"2025-06-18","_meta":{"keep":1}}});
        add_webhook_url(&mut value, "http://127.0.0.1:9/hook");
        assert_eq!(
            value["params"]["_meta"],
            serde_json::json!({"keep": 1, "webhookUrl": "http://127.0.0.1:9/hook"})
        );
        let mut bare = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize"});
        add_webhook_url(&mut bare, "http://h/x");
        assert_eq!(bare["params"]["_meta"]["webhookUrl"], "http://h/x");
    }
}

//! What the hybrid tests share: the test's webhook receivers, rmcp's
//! Streamable HTTP server with the demo tools behind the hybrid, and a raw
//! Streamable HTTP client. Loopback only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asyncmcp::hybrid::{HybridBuilder, HybridLayer};
use asyncmcp::queue::webhook::{WebhookOutbox, WebhookPolicy, WebhookSigner};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

/// The tools the tests answer at the webhook.
const WEBHOOK_TOOLS: [&str; 4] = ["add", "fail", "hash", "sleep"];

/// One POST to the test's webhook.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) raw: String,
}

/// The test's webhook on 127.0.0.1: the first `failures` POSTs get 503,
/// the rest 200 and land in `deliveries`.
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) deliveries: mpsc::UnboundedReceiver<Delivery>,
    pub(crate) attempts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    pub(crate) async fn start(failures: usize) -> Self {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = attempts.clone();
        let app = axum::Router::new().route(
            "/hooks/mcp",
            post(move |headers: HeaderMap, raw: String| {
                let tx = tx.clone();
                let attempt = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < failures {
                        return (StatusCode::SERVICE_UNAVAILABLE, "down");
                    }
                    let body = serde_json::from_str(&raw).expect("a JSON delivery");
                    let _ = tx.send(Delivery { headers, body, raw });
                    (StatusCode::OK, r#"{"status":"success"}"#)
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/mcp", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("webhook serves");
        });
        Self {
            url,
            deliveries,
            attempts,
            task,
        }
    }

    /// The next delivery, within 10 s.
    pub(crate) async fn next(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), self.deliveries.recv())
            .await
            .expect("a delivery within 10 s")
            .expect("webhook running")
    }
}

/// A listener that only counts the connections made to it.
pub(crate) struct Counter {
    pub(crate) url: String,
    pub(crate) connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Counter {
    pub(crate) async fn start(host: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            url: format!("http://{host}:{port}/hooks/mcp"),
            connections,
            task,
        }
    }
}

pub(crate) fn loopback_policy() -> WebhookPolicy {
    WebhookPolicy::prefixes(["http://127.0.0.1:"])
        .allow_http(true)
        .allow_loopback(true)
}

pub(crate) fn outbox(policy: WebhookPolicy, signer: Option<WebhookSigner>) -> WebhookOutbox {
    let mut builder = WebhookOutbox::builder(policy)
        .max_attempts(4)
        .backoff(Duration::from_millis(20), Duration::from_millis(80))
        .deadline(Duration::from_secs(5));
    if let Some(signer) = signer {
        builder = builder.signer(signer);
    }
    builder.build().expect("an outbox")
}

/// rmcp's Streamable HTTP server with the demo tools, behind the hybrid, on
/// 127.0.0.1.
pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) layer: HybridLayer,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start(hybrid: HybridBuilder) -> Self {
        let layer = hybrid.webhook_tools(WEBHOOK_TOOLS).build();
        let stop = CancellationToken::new();
        let factory = DemoServer::factory(Arc::new(DemoStats::default()));
        let service = StreamableHttpService::new(
            move || Ok(factory()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
        );
        let router = axum::Router::new().route_service("/mcp", layer.layer(service));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("server serves");
        });
        Self {
            url,
            layer,
            stop,
            task,
        }
    }
}

/// A raw Streamable HTTP client, posting as Python's does.
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) session: Option<String>,
}

/// One answer: status, headers, and the JSON-RPC messages of its body (an
/// SSE stream or one JSON document).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
    pub(crate) messages: Vec<Value>,
}

impl Client {
    pub(crate) fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: server.url.clone(),
            session: None,
        }
    }

    /// Ends the session (`DELETE` with its id); asserts it was accepted.
    pub(crate) async fn delete_session(&self) {
        let deleted = self
            .http
            .delete(&self.url)
            .header(
                "mcp-session-id",
                self.session.as_deref().expect("a session"),
            )
            .send()
            .await
            .expect("DELETE");
        assert!(deleted.status().is_success(), "{deleted:?}");
    }

    pub(crate) async fn post(&self, body: &Value) -> Answer {
        let mut request = self
            .http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .header("X-Client-ID", "raw-hybrid-client");
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        let response = request.body(body.to_string()).send().await.expect("POST");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let messages = if text.trim_start().starts_with('{') {
            vec![serde_json::from_str(&text).expect("JSON")]
        } else {
            text.lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim)
                .filter(|data| !data.is_empty())
                .map(|data| serde_json::from_str(data).expect("JSON event"))
                .collect()
        };
        Answer {
            status,
            headers,
            text,
            messages,
        }
    }

    /// Initializes (naming `webhook` when given) and sends `initialized`.
    pub(crate) async fn handshake(&mut self, webhook: Option<&str>) -> Answer {
        let answer = self.post(&initialize(webhook)).await;
        if answer.status != 200 {
            return answer;
        }
        let session = answer.headers["mcp-session-id"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        self.session = Some(session);
        let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert_eq!(self.post(&initialized).await.status, 202);
        answer
    }

    pub(crate) async fn call(&self, id: i64, tool: &str, arguments: Value) -> Answer {
        self.post(&call(id, tool, arguments)).await
    }
}

pub(crate) fn initialize(webhook: Option<&str>) -> Value {
    let mut params = json!({"protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"raw","version":"1"}});
    if let Some(webhook) = webhook {
        params["_meta"] = json!({"webhookUrl": webhook});
    }
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params": params})
}

pub(crate) fn call(id: i64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":arguments}})
}

pub(crate) fn text_of(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {result}"))
}

/// Polls `done` for up to 10 s.
pub(crate) async fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done(), "condition not met within 10 s");
}

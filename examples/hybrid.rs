//! The StreamableHTTP+webhook hybrid in one process: rmcp's Streamable HTTP
//! server (the demo tools) behind `HybridLayer`, a webhook receiver that
//! checks every delivery's signature, and a client that calls one ordinary
//! tool (answered on its stream) and one webhook tool (answered `202`, its
//! progress and result POSTed, signed, to the receiver).
//!
//! ```text
//! cargo run --features hybrid --example hybrid
//! ```
//!
//! Everything listens on 127.0.0.1, so the policy allows loopback and
//! `http://` here; a deployment allows only its callers' `https://` prefixes
//! (the default refuses loopback, private and metadata addresses).

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::hybrid::HybridLayer;
use asyncmcp::queue::webhook::{WebhookOutbox, WebhookPolicy, WebhookSigner, WebhookVerifier};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::support::init_tracing;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_layer::Layer;

/// The secret the server signs with and the receiver checks (Standard
/// Webhooks form: `whsec_` and base64). Share it out of band.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing("warn");

    // The receiver: refuses (401) what does not verify, passes the rest on.
    let verifier = Arc::new(WebhookVerifier::new(SECRET)?);
    let (tx, mut deliveries) = mpsc::unbounded_channel::<Value>();
    let receiver = axum::Router::new().route(
        "/webhook",
        post(move |headers: HeaderMap, body: String| {
            let (verifier, tx) = (verifier.clone(), tx.clone());
            async move {
                if let Err(error) = verifier.verify(&headers, body.as_bytes()) {
                    eprintln!("refused a delivery: {error}");
                    return StatusCode::UNAUTHORIZED;
                }
                if let Ok(message) = serde_json::from_str(&body) {
                    let _ = tx.send(message);
                }
                StatusCode::OK
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let webhook_url = format!("http://{}/webhook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    // The server: an ordinary rmcp Streamable HTTP service, `add` and
    // `sleep` answered at the caller's webhook, every delivery signed.
    let policy = WebhookPolicy::prefixes(["http://127.0.0.1:"])
        .allow_http(true)
        .allow_loopback(true);
    let outbox = WebhookOutbox::builder(policy)
        .signer(WebhookSigner::new(SECRET)?)
        .build()?;
    let hybrid = HybridLayer::builder(outbox)
        .webhook_tools(["add", "sleep"])
        .build();
    let factory = DemoServer::factory(Arc::new(DemoStats::default()));
    let service = StreamableHttpService::new(
        move || Ok(factory()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", hybrid.layer(service));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_url = format!("http://{}/mcp", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The client, in raw HTTP to show the wire.
    let http = reqwest::Client::new();
    let post = |session: Option<String>, body: Value| {
        let mut request = http
            .post(&server_url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.body(body.to_string()).send()
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "example", "version": "1"},
        "_meta": {"webhookUrl": webhook_url}}});
    let answer = post(None, initialize).await?;
    let session = answer
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no session: {}", answer.status()))?;
    answer.text().await?;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(Some(session.clone()), initialized).await?;

    let echo = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "on the stream"}}});
    let answer = post(Some(session.clone()), echo).await?;
    println!(
        "echo: HTTP {}, {}",
        answer.status(),
        answer.text().await?.trim()
    );

    let sleep = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"ms": 400},
                   "_meta": {"progressToken": "sleep-2"}}});
    let answer = post(Some(session.clone()), sleep).await?;
    println!("sleep: HTTP {} (the exchange ends here)", answer.status());
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the receiver stopped"))?;
        println!("at the webhook (signature checked): {message}");
        if message.get("id") == Some(&json!(2)) {
            break;
        }
    }
    Ok(())
}

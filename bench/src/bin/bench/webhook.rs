//! asyncmcp over webhooks: the demo tools behind a [`QueueServer`] fed by a
//! [`WebhookInbox`] and answering through a [`WebhookOutbox`], called
//! through a [`WebhookClientTransport`], on loopback.
//!
//! Both sides keep the library's defaults except what loopback needs (the
//! outbox may POST to `http://127.0.0.1`: plain HTTP and loopback allowed,
//! and the server takes reply addresses there) and the server's idle poll
//! (see [`IDLE_POLL`]). With `--signed` the outbox
//! signs every delivery (Standard Webhooks) and the client accepts only
//! signed ones, as they would across a network.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asyncmcp::queue::Outbox;
use asyncmcp::queue::sqs::ApiCallCounter;
use asyncmcp::queue::webhook::{
    DEFAULT_PATH, WebhookInbox, WebhookOutbox, WebhookPolicy, WebhookSigner, WebhookVerifier,
};
use asyncmcp::{QueueServer, WebhookClientTransport};
use rmcp::ServiceExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::demo_tools::{DemoServer, DemoStats};
use crate::ours::{self, Echo};
use crate::protocol;

/// The secret both sides of `--signed` share. The bench's own: it signs
/// loopback traffic between two of its processes and nothing else.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where webhooks may go: this host's loopback, over plain HTTP.
const LOOPBACK: &str = "http://127.0.0.1:";

/// How long the server's receives wait when no request comes.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What a webhook process needs to know.
#[derive(clap::Args, Clone)]
pub struct WebhookArgs {
    /// The raw HTTP round trip (`raw_http.rs`) instead of MCP.
    #[arg(long)]
    pub raw: bool,
    /// Sign deliveries (server) or accept only signed ones (client).
    #[arg(long)]
    signed: bool,
    /// Where the server takes requests (clients).
    #[arg(long)]
    pub server_url: Option<String>,
    /// Calls made before the first level (clients).
    #[arg(long, default_value_t = 20)]
    pub warm_up: usize,
}

impl WebhookArgs {
    /// `--server-url`, which clients need.
    pub fn server_url(&self) -> anyhow::Result<&str> {
        self.server_url
            .as_deref()
            .context("a webhook client needs --server-url")
    }
}

/// The server: the demo tools behind the webhook inbox on 127.0.0.1, its
/// URL in the ready line.
pub async fn serve(args: WebhookArgs) -> anyhow::Result<()> {
    let inbox = WebhookInbox::builder().build();
    let policy = WebhookPolicy::prefixes([LOOPBACK])
        .allow_http(true)
        .allow_loopback(true);
    let mut outbox = WebhookOutbox::builder(policy);
    if args.signed {
        outbox = outbox.signer(WebhookSigner::new(SECRET)?);
    }
    let outbox: Arc<dyn Outbox> = Arc::new(outbox.build()?);
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(inbox.clone(), inbox.tap(outbox))
        .max_in_flight(ours::MAX_IN_FLIGHT)
        // The webhook inbox is in memory: a receive returns as soon as a
        // request arrives, so the wait only bounds an idle poll, and the
        // shutdown, which lets the last poll finish (20 s by default).
        .wait(IDLE_POLL)
        .allow_reply_prefix(LOOPBACK)
        .build(DemoServer::factory(Arc::new(DemoStats::default())))
        .spawn(shutdown.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{DEFAULT_PATH}", listener.local_addr()?);
    let router = inbox.router();
    let http = tokio::spawn(async move { axum::serve(listener, router).await });
    protocol::serve_server_at(&url).await?;
    shutdown.cancel();
    server.await?;
    http.abort();
    Ok(())
}

/// The client: `tools/call echo` through the webhook client transport,
/// after `--warm-up` calls. It makes no AWS API calls.
pub async fn drive(args: WebhookArgs) -> anyhow::Result<()> {
    let mut builder =
        WebhookClientTransport::builder(args.server_url()?).client_id("asyncmcp-bench");
    if args.signed {
        builder = builder.verifier(WebhookVerifier::new(SECRET)?);
    }
    let client = ().serve(builder.start().await?).await?;
    let echo = Echo::new(client.peer().clone(), "text");
    let call = move || echo.clone().once();
    crate::run_level(args.warm_up, 10, call.clone()).await;
    protocol::serve_client(&ApiCallCounter::new(), call).await?;
    client.cancel().await?;
    Ok(())
}

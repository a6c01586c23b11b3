//! The demo MCP server taking requests over HTTP and answering at the
//! caller's webhook (the wire of Python asyncmcp's webhook transport), with
//! signed deliveries both ways.
//!
//! ```text
//! export ASYNCMCP_WEBHOOK_SECRET=whsec_$(head -c 32 /dev/urandom | base64)
//! cargo run --features webhook --example webhook_server -- --allow-loopback
//! cargo run --features webhook --example webhook_client -- \
//!     --server-url http://127.0.0.1:8000/mcp/request --tool add --args '{"a": 2, "b": 3}'
//! ```
//!
//! Requests must be signed with the shared secret (Standard Webhooks); each
//! reply is signed with it and POSTed only to a URL under a
//! `--reply-webhook` prefix, never to a private or loopback address unless
//! `--allow-loopback` (local testing) says so. Serve it behind TLS: the
//! listener speaks plain HTTP. Stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use asyncmcp::QueueServer;
use asyncmcp::queue::Outbox;
use asyncmcp::queue::webhook::{
    HttpLimits, WebhookInbox, WebhookOutbox, WebhookPolicy, WebhookSigner, WebhookVerifier, serve,
};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::server_cli::{self, ServerArgs};
use asyncmcp_testkit::support;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serve the demo tools over webhooks.
#[derive(Parser)]
struct Args {
    /// The address to take requests on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Replies may be POSTed to URLs starting with this (repeatable).
    #[arg(long, default_value = "http://127.0.0.1:")]
    reply_webhook: Vec<String>,
    /// Allow replies to loopback addresses over plain http (local testing).
    #[arg(long)]
    allow_loopback: bool,
    /// The shared signing secret (`whsec_…` or base64).
    #[arg(long, env = "ASYNCMCP_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("info,rmcp=warn");
    let args = Args::parse();
    let inbox = WebhookInbox::builder()
        .verifier(WebhookVerifier::new(&args.secret)?)
        .build();
    let policy = WebhookPolicy::prefixes(args.reply_webhook.iter().cloned())
        .allow_loopback(args.allow_loopback)
        .allow_http(args.allow_loopback);
    let outbox: Arc<dyn Outbox> = Arc::new(
        WebhookOutbox::builder(policy)
            .signer(WebhookSigner::new(&args.secret)?)
            .build()?,
    );
    let mut builder = QueueServer::builder(inbox.clone(), inbox.tap(outbox));
    for prefix in &args.reply_webhook {
        builder = builder.allow_reply_prefix(prefix.clone());
    }
    let server = args
        .server
        .apply(builder)?
        .build(DemoServer::factory(Arc::new(DemoStats::default())));

    let listener = TcpListener::bind(args.listen).await?;
    let url = format!(
        "http://{}{}",
        listener.local_addr()?,
        asyncmcp::queue::webhook::DEFAULT_PATH
    );
    let stop_http = CancellationToken::new();
    let http = tokio::spawn(serve(
        listener,
        inbox.router(),
        HttpLimits::default(),
        stop_http.clone(),
    ));
    // Runs until a signal; the HTTP front stops taking requests first, so
    // the server's drain sees no new ones.
    server_cli::serve_until_signal(server, &url).await?;
    stop_http.cancel();
    http.await?;
    Ok(())
}

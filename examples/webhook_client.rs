//! Calls a tool of an MCP server that takes requests over HTTP and answers
//! at a webhook (`examples/webhook_server.rs`, or Python asyncmcp's webhook
//! server), its requests signed and its replies checked with the shared
//! signing secret.
//!
//! ```text
//! export ASYNCMCP_WEBHOOK_SECRET=…   # the server's
//! cargo run --features webhook --example webhook_client -- \
//!     --server-url http://127.0.0.1:8000/mcp/request --tool echo
//! ```
//!
//! The replies arrive on a receiver this process starts (`--bind`, a free
//! loopback port by default); `--public-url` names it when the server
//! reaches it through a tunnel or proxy.

use std::net::SocketAddr;

use asyncmcp::WebhookClientTransport;
use asyncmcp::queue::webhook::{WebhookSigner, WebhookVerifier};
use asyncmcp_testkit::client_cli::{self, CallArgs};
use asyncmcp_testkit::support;
use clap::Parser;

/// Call one tool of a webhook MCP server.
#[derive(Parser)]
struct Args {
    /// Where requests are POSTed.
    #[arg(long)]
    server_url: String,
    /// The address the reply receiver binds.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// The receiver's URL as the server reaches it, when not the bound one.
    #[arg(long)]
    public_url: Option<String>,
    /// The shared signing secret (`whsec_…` or base64).
    #[arg(long, env = "ASYNCMCP_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    #[command(flatten)]
    call: CallArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("warn,rmcp=error");
    let args = Args::parse();
    args.call.arguments()?;
    let mut builder = WebhookClientTransport::builder(&args.server_url)
        .bind(args.bind)
        .signer(WebhookSigner::new(&args.secret)?)
        .verifier(WebhookVerifier::new(&args.secret)?);
    if let Some(url) = &args.public_url {
        builder = builder.public_url(url);
    }
    let transport = builder.start().await?;
    client_cli::call_and_print(transport, &args.call).await
}

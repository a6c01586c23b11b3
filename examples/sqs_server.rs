//! The demo MCP server behind an SQS queue (AWS or LocalStack).
//!
//! ```text
//! localstack/start.sh && export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --example sqs_server -- --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-requests
//! ```
//!
//! Stops on Ctrl-C or SIGTERM: it stops receiving, finishes the calls in
//! flight within the grace period and releases the rest to other replicas.

#[path = "shared/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "shared/demo_tools.rs"]
mod demo_tools;

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp::wire::session::SessionKeys;
use clap::Parser;
use demo_tools::{DemoServer, DemoStats};
use tokio_util::sync::CancellationToken;

/// Serve the demo tools from an SQS request queue.
#[derive(Parser)]
struct Args {
    /// The request queue URL.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL")]
    queue_url: String,
    /// Requests handled at once.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Concurrent long polls.
    #[arg(long, default_value_t = 4)]
    pollers: usize,
    /// Cancel calls running longer than this many milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Also allow replies to addresses starting with this prefix (repeatable).
    /// Queues beside the request queue are always allowed.
    #[arg(long)]
    allow_reply_prefix: Vec<String>,
    /// Session key shared by all replicas (at least 32 bytes). Without it,
    /// a random per-process key is used.
    #[arg(long, env = "ASYNCMCP_SESSION_KEY", hide_env_values = true)]
    session_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("info,rmcp=warn");
    let args = Args::parse();
    let client = sqs::client(&sqs::sdk_config_from_env().await);
    let inbox = SqsInbox::open(client.clone(), &args.queue_url).await?;
    let mut builder = QueueServer::builder(inbox, SqsOutbox::new(client))
        .max_in_flight(args.max_in_flight)
        .pollers(args.pollers);
    if let Some(ms) = args.timeout_ms {
        builder = builder.request_timeout(Duration::from_millis(ms));
    }
    for prefix in args.allow_reply_prefix {
        builder = builder.allow_reply_prefix(prefix);
    }
    if let Some(key) = args.session_key {
        builder = builder.session_keys(SessionKeys::new(key.into_bytes(), None)?);
    }
    let server = builder.build(DemoServer::factory(Arc::new(DemoStats::default())));

    let shutdown = CancellationToken::new();
    let running = server.spawn(shutdown.clone());
    println!("READY serving {}", args.queue_url);
    wait_for_signal().await;
    shutdown.cancel();
    running.await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

//! The demo MCP server behind an SQS queue (AWS or LocalStack).
//!
//! ```text
//! localstack/start.sh && export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --example sqs_server -- --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-requests
//! ```
//!
//! Stops on Ctrl-C or SIGTERM: it stops receiving, finishes the calls in
//! flight within the grace period and releases the rest to other replicas.

use std::sync::Arc;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::server_cli::{self, ServerArgs};
use asyncmcp_testkit::support;
use clap::Parser;

/// Serve the demo tools from an SQS request queue.
#[derive(Parser)]
struct Args {
    /// The request queue URL.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL")]
    queue_url: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("info,rmcp=warn");
    let args = Args::parse();
    let client = sqs::client(&sqs::sdk_config_from_env().await);
    let inbox = SqsInbox::open(client.clone(), &args.queue_url).await?;
    let builder = args
        .server
        .apply(QueueServer::builder(inbox, SqsOutbox::new(client)))?;
    let server = builder.build(DemoServer::factory(Arc::new(DemoStats::default())));
    server_cli::serve_until_signal(server, &args.queue_url).await
}

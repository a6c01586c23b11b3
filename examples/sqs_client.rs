//! Calls a tool of an MCP server behind an SQS queue (AWS or LocalStack).
//!
//! ```text
//! export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --example sqs_client -- \
//!     --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-requests \
//!     --tool add --args '{"a": 2, "b": 3}'
//! ```
//!
//! Without `--reply-queue-url` a reply queue is created for the run and
//! deleted at the end. `--protocol 2026-07-28` uses the stateless
//! (discover) lifecycle instead of `initialize`.

use asyncmcp::QueueClientTransport;
use asyncmcp::queue::sqs;
use asyncmcp_testkit::client_cli::{self, CallArgs};
use asyncmcp_testkit::support;
use clap::Parser;

/// Call one tool of a queue-backed MCP server.
#[derive(Parser)]
struct Args {
    /// The server's request queue URL.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL")]
    queue_url: String,
    /// This client's reply queue URL (created and deleted when omitted).
    #[arg(long)]
    reply_queue_url: Option<String>,
    #[command(flatten)]
    call: CallArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("warn,rmcp=error");
    let args = Args::parse();
    args.call.arguments()?;
    let sqs_client = sqs::client(&sqs::sdk_config_from_env().await);
    let mut builder = QueueClientTransport::builder(&args.queue_url);
    if let Some(url) = &args.reply_queue_url {
        builder = builder.reply_queue(url);
    }
    let transport = builder.connect_sqs(&sqs_client).await?;
    client_cli::call_and_print(transport, &args.call).await
}

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

#[path = "shared/support.rs"]
#[allow(dead_code)]
mod support;

use asyncmcp::queue::sqs;
use asyncmcp::{QueueClientConfig, QueueClientTransport};
use clap::Parser;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::ClientLifecycleMode;
use rmcp::{ClientHandler, ServiceExt};

/// Call one tool of a queue-backed MCP server.
#[derive(Parser)]
struct Args {
    /// The server's request queue URL.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL")]
    queue_url: String,
    /// This client's reply queue URL (created and deleted when omitted).
    #[arg(long)]
    reply_queue_url: Option<String>,
    /// The tool to call.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// The tool's arguments, as a JSON object.
    #[arg(long, default_value = r#"{"text": "hello over SQS"}"#)]
    args: String,
    /// `initialize` (any version up to 2025-11-25) or `2026-07-28`.
    #[arg(long, default_value = "initialize")]
    protocol: String,
}

#[derive(Clone, Default)]
struct Client;
impl ClientHandler for Client {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("warn,rmcp=error");
    let args = Args::parse();
    let arguments: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&args.args)
        .map_err(|e| anyhow::anyhow!("--args must be a JSON object: {e}"))?;

    let sqs_client = sqs::client(&sqs::sdk_config_from_env().await);
    let transport = QueueClientTransport::connect_sqs(
        sqs_client,
        QueueClientConfig::new(&args.queue_url),
        args.reply_queue_url.as_deref(),
    )
    .await?;
    let client = match args.protocol.as_str() {
        "initialize" => Client.serve(transport).await?,
        "2026-07-28" => {
            let lifecycle = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            rmcp::service::serve_client_with_lifecycle(Client, transport, lifecycle).await?
        }
        other => anyhow::bail!("unknown --protocol {other:?}"),
    };
    let result = client
        .call_tool(CallToolRequestParams::new(args.tool.clone()).with_arguments(arguments))
        .await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    client.cancel().await?;
    Ok(())
}

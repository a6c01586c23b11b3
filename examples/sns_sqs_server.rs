//! The demo MCP server behind an SNS topic (AWS or LocalStack): it consumes
//! the SQS queue subscribed to the request topic and publishes replies to
//! SNS topics.
//!
//! ```text
//! localstack/start.sh && export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --features sns --example sns_sqs_server -- \
//!     --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-sns-requests
//! ```
//!
//! Replies go to the topic (or queue) each request names, like Python
//! asyncmcp's `client_topic_arn`; with `--shared-reply-topic-arn` every reply
//! goes to that one topic instead, where each client's subscription filter
//! policy on `ClientId` picks out its own. Stops on Ctrl-C or SIGTERM like
//! `sqs_server`.

use std::sync::Arc;

use asyncmcp::QueueServer;
use asyncmcp::queue::RoutingOutbox;
use asyncmcp::queue::sns::{self, SnsOutbox};
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::server_cli::{self, ServerArgs};
use asyncmcp_testkit::support;
use clap::Parser;

/// Serve the demo tools from the queue subscribed to an SNS request topic.
#[derive(Parser)]
struct Args {
    /// The URL of the queue subscribed to the request topic.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL")]
    queue_url: String,
    /// Publish every reply to this topic, whatever the request names.
    #[arg(long)]
    shared_reply_topic_arn: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("info,rmcp=warn");
    let args = Args::parse();
    let sdk = sqs::sdk_config_from_env().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let inbox = SqsInbox::open(sqs_client.clone(), &args.queue_url).await?;
    let outbox = RoutingOutbox::new()
        .with(Arc::new(SnsOutbox::new(sns_client)))
        .with(Arc::new(SqsOutbox::new(sqs_client)));
    let mut builder = args.server.apply(QueueServer::builder(inbox, outbox))?;
    if let Some(topic) = &args.shared_reply_topic_arn {
        builder = builder.shared_reply_address(topic);
    }
    let server = builder.build(DemoServer::factory(Arc::new(DemoStats::default())));
    server_cli::serve_until_signal(server, &args.queue_url).await
}

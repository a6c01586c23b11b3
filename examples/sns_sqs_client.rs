//! Calls a tool of an MCP server behind an SNS topic (AWS or LocalStack).
//!
//! ```text
//! export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --features sns --example sns_sqs_client -- \
//!     --topic-arn arn:aws:sns:us-east-1:000000000000:mcp-requests-topic \
//!     --tool add --args '{"a": 2, "b": 3}'
//! ```
//!
//! Requests are published to `--topic-arn`. Replies come back:
//! * by default, through a reply topic and queue of the run's own, created
//!   on connect and deleted at the end;
//! * with `--shared-reply-topic-arn`, through that shared topic, to a queue
//!   of the run's own subscribed with a filter policy on its `ClientId`;
//! * with `--shared-reply-topic-arn` and `--reply-queue-url`, through an
//!   existing topic and queue; nothing is created.

use asyncmcp::QueueClientTransport;
use asyncmcp::client::SnsReplies;
use asyncmcp::queue::{sns, sqs};
use asyncmcp_testkit::client_cli::{self, CallArgs};
use asyncmcp_testkit::support;
use clap::Parser;

/// Call one tool of an MCP server behind an SNS topic.
#[derive(Parser)]
struct Args {
    /// The server's request topic ARN.
    #[arg(long, env = "ASYNCMCP_TOPIC_ARN")]
    topic_arn: String,
    /// A reply topic shared with other clients.
    #[arg(long)]
    shared_reply_topic_arn: Option<String>,
    /// An existing queue subscribed to the reply topic (needs
    /// `--shared-reply-topic-arn`).
    #[arg(long, requires = "shared_reply_topic_arn")]
    reply_queue_url: Option<String>,
    #[command(flatten)]
    call: CallArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("warn,rmcp=error");
    let args = Args::parse();
    args.call.arguments()?;
    let replies = match (args.shared_reply_topic_arn, args.reply_queue_url) {
        (Some(topic_arn), Some(queue_url)) => SnsReplies::Existing {
            queue_url,
            topic_arn,
        },
        (Some(topic_arn), None) => SnsReplies::SharedTopic(topic_arn),
        (None, _) => SnsReplies::OwnTopic,
    };
    let sdk = sqs::sdk_config_from_env().await;
    let transport = QueueClientTransport::builder(&args.topic_arn)
        .connect_sns_sqs(&sqs::client(&sdk), &sns::client(&sdk), replies)
        .await?;
    client_cli::call_and_print(transport, &args.call).await
}

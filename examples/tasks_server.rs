//! Long tool calls as durable tasks, behind an SQS queue (AWS or LocalStack).
//!
//! ```text
//! localstack/start.sh && export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --example tasks_server --features tasks-sqlite -- \
//!     --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-requests \
//!     --store sqlite:/tmp/asyncmcp-tasks.db
//! ```
//!
//! Serves `work(ms)` and `greet()` as tasks to clients that declare the
//! tasks extension (ordinary results to the rest) and `echo(text)`. Run it
//! twice on one queue with one store: when a replica dies mid-task, its
//! request reappears for the other, which runs the work again under the same
//! task id. Stores: `memory` (this process only), `sqlite:PATH` (feature
//! `tasks-sqlite`: replicas on one machine), `s3://BUCKET/PREFIX` (feature
//! `tasks-s3`: replicas anywhere).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp::tasks::{StoreSpec, TaskSettings};
use asyncmcp_testkit::server_cli::{self, ServerArgs};
use asyncmcp_testkit::support;
use asyncmcp_testkit::task_tools::{TaskToolStats, TaskTools};
use clap::Parser;

/// Serve the task demo tools from an SQS request queue.
#[derive(Parser)]
struct Args {
    /// The request queue URL.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL")]
    queue_url: String,
    /// Where tasks are kept: `memory`, `sqlite:PATH` or `s3://BUCKET/PREFIX`.
    #[arg(long, default_value = "memory")]
    store: StoreSpec,
    /// How long tasks and their results are kept, in seconds.
    #[arg(long, default_value_t = 3600)]
    task_ttl: u64,
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("info,rmcp=warn");
    let args = Args::parse();
    let store = args
        .store
        .open()
        .await
        .with_context(|| format!("open the task store {}", args.store))?;
    let client = sqs::client(&sqs::sdk_config_from_env().await);
    let inbox = SqsInbox::open(client.clone(), &args.queue_url).await?;
    let settings = TaskSettings::shared(store)
        .tools(["work", "greet"])
        .ttl(Some(Duration::from_secs(args.task_ttl)));
    let builder = args
        .server
        .apply(QueueServer::builder(inbox, SqsOutbox::new(client)))?
        .tasks(settings);
    let server = builder.build(TaskTools::factory(Arc::new(TaskToolStats::default())));
    server_cli::serve_until_signal(server, &args.queue_url).await
}

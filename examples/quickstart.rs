//! The quickstart: an MCP server behind a queue and a client calling it, in
//! one process, on the embedded in-memory broker. Nothing else needs to run.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! The same code runs on Amazon SQS (or LocalStack) by swapping the broker:
//! see the `sqs_server` and `sqs_client` examples.

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::{MemoryBroker, QueueClientTransport, QueueServer};
// The demo tools are an ordinary rmcp `ServerHandler` (testkit/src/demo_tools.rs); `call` and
// `text_of` build a `tools/call` and read its text.
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::support::{call, init_tracing, text_of};
use rmcp::model::{ClientRequest, ProgressNotificationParam, Request};
use rmcp::service::{NotificationContext, PeerRequestOptions};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A client that prints the progress the server reports.
struct ProgressPrinter;

impl ClientHandler for ProgressPrinter {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        println!(
            "  progress {}/{}: {}",
            params.progress,
            params.total.unwrap_or_default(),
            params.message.unwrap_or_default()
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing("warn,rmcp=off");

    // 1. A broker and the server's request queue.
    let broker = MemoryBroker::new();
    let requests = broker.create_queue("requests", MemoryQueueOptions::default());

    // 2. The server: an ordinary rmcp ServerHandler, one fresh instance per request.
    let stats = Arc::new(DemoStats::default());
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(broker.inbox(&requests)?, broker.outbox())
        .build(DemoServer::factory(stats.clone()))
        .spawn(shutdown.clone());

    // 3. A client with a reply queue of its own.
    let transport = QueueClientTransport::memory(&broker, &requests)?;
    let client = ProgressPrinter.serve(transport).await?;
    let info = client.peer_info().map(|i| i.protocol_version.to_string());
    println!("connected (protocol {})", info.unwrap_or_default());

    let tools = client.list_all_tools().await?;
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    println!("tools: {}", names.join(", "));

    let echo = client
        .call_tool(call("echo", json!({"text": "hello over a queue"})))
        .await?;
    println!("echo -> {}", text_of(&echo));

    let sum = client
        .call_tool(call("add", json!({"a": 2, "b": 40})))
        .await?;
    println!("add(2, 40) -> {}", text_of(&sum));

    let failed = client
        .call_tool(call("fail", json!({"message": "no such invoice"})))
        .await?;
    println!(
        "fail -> isError={} {:?}",
        failed.is_error.unwrap_or(false),
        text_of(&failed)
    );

    println!("sleep(400 ms) with progress:");
    let slept = client.call_tool(call("sleep", json!({"ms": 400}))).await?;
    println!("sleep -> {}", text_of(&slept));

    // A call cancelled while it runs: the server stops the handler.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call("sleep", json!({"ms": 60_000})))),
            PeerRequestOptions::no_options(),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.cancel(Some("changed my mind".into())).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stats
        .sleeps_cancelled
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the cancelled call did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("sleep(60 s) cancelled after 300 ms: the handler stopped");

    // Check the answers before declaring success.
    anyhow::ensure!(text_of(&echo) == "hello over a queue");
    anyhow::ensure!(text_of(&sum) == "42");
    anyhow::ensure!(failed.is_error == Some(true));

    client.cancel().await?;
    shutdown.cancel();
    server.await?;
    println!("done");
    Ok(())
}

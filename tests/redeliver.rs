//! A handler that gives its request back to the queue
//! ([`asyncmcp::server::Redeliver`]): the request is not answered, runs
//! again on a later delivery, and is dead-lettered with the handler's reason
//! (its caller told) on the last delivery the server allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::{Inbox, Outbox, QueueMessage};
use asyncmcp::server::Redeliver;
use asyncmcp::{MemoryBroker, QueueServer};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A tool that gives its first `give_back` runs back to the queue.
#[derive(Clone)]
struct GivesBack {
    runs: Arc<AtomicUsize>,
    give_back: usize,
}

impl ServerHandler for GivesBack {
    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if run <= self.give_back {
            let redeliver = context
                .extensions
                .get::<Redeliver>()
                .expect("a queue server hands each request a Redeliver");
            redeliver.request(format!("backend down on run {run}"));
            // Never sent: the request goes back to the queue instead.
            return Ok(CallToolResult::success(vec![ContentBlock::text(
                "a result nobody computed",
            )])
            .into());
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("ran {run}"))]).into())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

struct Setup {
    broker: MemoryBroker,
    requests: String,
    replies: String,
    dead_letters: String,
    runs: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

async fn start(give_back: usize, max_receive_count: u32) -> Setup {
    let broker = MemoryBroker::new();
    let options = MemoryQueueOptions::default().with_visibility_timeout(Duration::from_secs(2));
    let requests = broker.create_queue("requests", options);
    let replies = broker.create_queue("replies", MemoryQueueOptions::default());
    let dead_letters = broker.create_queue("dead-letters", MemoryQueueOptions::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = GivesBack {
        runs: runs.clone(),
        give_back,
    };
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(broker.inbox(&requests).expect("inbox"), broker.outbox())
        .wait(Duration::from_millis(200))
        .dead_letter(dead_letters.clone(), max_receive_count)
        .build(move || handler.clone())
        .spawn(shutdown.clone());
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"anything","arguments":{}}});
    broker
        .outbox()
        .send(
            &requests,
            QueueMessage::new(call.to_string())
                .with_string("ReplyTo", replies.clone())
                .with_string("ClientId", "redeliver-test"),
        )
        .await
        .expect("request sent");
    Setup {
        broker,
        requests,
        replies,
        dead_letters,
        runs,
        shutdown,
        server,
    }
}

/// Every message on `queue` within `wait`, acked, as JSON with its
/// attributes.
async fn drain(inbox: &dyn Inbox, wait: Duration) -> Vec<(Value, QueueMessage)> {
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        for delivery in inbox
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive")
        {
            inbox.ack(&delivery.receipt).await.expect("ack");
            let body = serde_json::from_str(&delivery.message.body).expect("JSON");
            found.push((body, delivery.message));
        }
    }
    found
}

#[tokio::test]
async fn a_request_given_back_runs_again_and_only_its_real_answer_is_sent() {
    let setup = start(2, 5).await;
    let replies = setup.broker.inbox(&setup.replies).expect("inbox");
    let answers = drain(&replies, Duration::from_secs(8)).await;
    let bodies: Vec<&Value> = answers.iter().map(|(body, _)| body).collect();
    assert_eq!(bodies.len(), 1, "one answer, the real one: {bodies:?}");
    assert_eq!(bodies[0]["id"], 7);
    assert_eq!(
        bodies[0]["result"]["content"][0]["text"], "ran 3",
        "{}",
        bodies[0]
    );
    assert_eq!(setup.runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        setup.broker.depth(&setup.requests),
        (0, 0),
        "request removed"
    );
    let dead = setup.broker.inbox(&setup.dead_letters).expect("inbox");
    assert!(drain(&dead, Duration::from_millis(300)).await.is_empty());
    setup.shutdown.cancel();
    setup.server.await.expect("server stopped");
}

#[tokio::test]
async fn a_request_given_back_on_its_last_delivery_is_dead_lettered_with_the_reason() {
    let setup = start(usize::MAX, 2).await;
    let dead = setup.broker.inbox(&setup.dead_letters).expect("inbox");
    let letters = drain(&dead, Duration::from_secs(8)).await;
    assert_eq!(letters.len(), 1, "dead-lettered once");
    let (body, message) = &letters[0];
    assert_eq!(body["id"], 7);
    let reason = message.attribute("DeadLetterReason").unwrap_or_default();
    assert!(
        reason.contains("backend down on run 2") && reason.contains("on delivery 2"),
        "{reason}"
    );
    let replies = setup.broker.inbox(&setup.replies).expect("inbox");
    let told = drain(&replies, Duration::from_millis(500)).await;
    assert_eq!(told.len(), 1, "the caller is told, once: {told:?}");
    assert_eq!(told[0].0["id"], 7);
    assert!(
        told[0].0.get("result").is_none(),
        "never a success: {}",
        told[0].0
    );
    assert_eq!(told[0].0["error"]["code"], -32603);
    assert_eq!(setup.runs.load(Ordering::SeqCst), 2, "ran on each delivery");
    assert_eq!(
        setup.broker.depth(&setup.requests),
        (0, 0),
        "request removed"
    );
    setup.shutdown.cancel();
    setup.server.await.expect("server stopped");
}

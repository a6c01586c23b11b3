//! Tool limits on the memory broker (fast, no LocalStack): a saturated
//! tool's calls wait in the queue while another tool's calls go on, and the
//! broker's own send time ends a wait that lasts too long. The SQS version,
//! with the API calls counted, is `tests/limits.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::{Inbox, Outbox, QueueMessage};
use asyncmcp::server::LIMIT_WAIT_EXCEEDED;
use asyncmcp::{MemoryBroker, QueueServer};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// `slow` sleeps `ms`, counting how many run at once and when the last
/// started; `echo` notes when the last finished (ticks of one clock).
#[derive(Clone, Default)]
struct Tools {
    clock: Arc<AtomicU64>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    last_slow_start: Arc<AtomicU64>,
    last_echo: Arc<AtomicU64>,
}

impl ServerHandler for Tools {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let tick = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        if request.name == "slow" {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.last_slow_start.fetch_max(tick, Ordering::SeqCst);
            let ms = arguments.get("ms").and_then(Value::as_u64).unwrap_or(300);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
        } else {
            self.last_echo.fetch_max(tick, Ordering::SeqCst);
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(request.name.to_string())]).into())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

async fn send(broker: &MemoryBroker, requests: &str, replies: &str, id: u64, tool: &str, ms: u64) {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":{"ms":ms}}});
    broker
        .outbox()
        .send(
            requests,
            QueueMessage::new(call.to_string())
                .with_string("ReplyTo", replies.to_owned())
                .with_string("ClientId", "memory-limits"),
        )
        .await
        .expect("request sent");
}

async fn responses(inbox: &dyn Inbox, count: usize, within: Duration) -> HashMap<u64, Value> {
    let mut found = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while found.len() < count && tokio::time::Instant::now() < deadline {
        for delivery in inbox
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive")
        {
            inbox.ack(&delivery.receipt).await.expect("ack");
            let body: Value = serde_json::from_str(&delivery.message.body).expect("JSON");
            if let Some(id) = body.get("id").and_then(Value::as_u64) {
                found.insert(id, body);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_saturated_tool_waits_in_the_queue_and_gives_up_past_the_maximum_wait() {
    let broker = MemoryBroker::new();
    let requests = broker.create_queue("requests", MemoryQueueOptions::default());
    let replies = broker.create_queue("replies", MemoryQueueOptions::default());
    let tools = Tools::default();
    let shutdown = CancellationToken::new();
    let server = {
        let tools = tools.clone();
        QueueServer::builder(broker.inbox(&requests).expect("inbox"), broker.outbox())
            .wait(Duration::from_millis(200))
            .tool_limit("slow", 1)
            .max_limit_wait(Duration::from_secs(4))
            .build(move || tools.clone())
            .spawn(shutdown.clone())
    };
    for id in 0..3 {
        send(&broker, &requests, &replies, id, "slow", 400).await;
    }
    // Behind the three, one that cannot run within the maximum wait.
    send(&broker, &requests, &replies, 3, "slow", 6_000).await;
    send(&broker, &requests, &replies, 4, "slow", 10).await;
    for id in 100..120 {
        send(&broker, &requests, &replies, id, "echo", 0).await;
    }
    let inbox = broker.inbox(&replies).expect("reply inbox");
    let found = responses(&inbox, 25, Duration::from_secs(30)).await;
    assert_eq!(found.len(), 25, "every call answered: {found:?}");
    assert_eq!(
        tools.most.load(Ordering::SeqCst),
        1,
        "one slow call at a time"
    );
    for id in 100..120 {
        assert_eq!(found[&id]["result"]["content"][0]["text"], "echo");
    }
    assert!(
        tools.last_echo.load(Ordering::SeqCst) < tools.last_slow_start.load(Ordering::SeqCst),
        "the echo calls did not wait for the slow ones"
    );
    // The call behind the six-second one waits past the four-second
    // maximum, and is told which limit held it.
    let gave_up: Vec<u64> = found
        .iter()
        .filter(|(_, body)| body["error"]["code"] == json!(LIMIT_WAIT_EXCEEDED.0))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        !gave_up.is_empty(),
        "a call waited past the maximum: {found:?}"
    );
    for id in gave_up {
        let message = found[&id]["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("tool `slow` is at its limit of 1 call at once on this replica"),
            "{message}"
        );
    }
    shutdown.cancel();
    server.await.expect("server stopped");
}

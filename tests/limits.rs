//! Tool limits on real SQS (LocalStack): calls over a limit wait in the
//! queue, not in the server, and do not hold up other tools' calls.
//!
//! Needs LocalStack: `scripts/test.sh` starts it (see `asyncmcp_testkit::aws`).
#![cfg(feature = "sqs")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, ApiCallCounter, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox, QueueMessage};
use asyncmcp::server::{LIMIT_WAIT_EXCEEDED, QueueServerBuilder};
use asyncmcp_testkit::{aws, unique_name};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What the tools saw, in one order.
#[derive(Default)]
struct Seen {
    clock: AtomicU64,
    slow_running: AtomicUsize,
    slow_most: AtomicUsize,
    /// (tick, event, label), e.g. (3, "start", "slow-4").
    events: Mutex<Vec<(u64, &'static str, String)>>,
}

impl Seen {
    fn record(&self, event: &'static str, label: &str) {
        let tick = self.clock.fetch_add(1, Ordering::SeqCst);
        self.events
            .lock()
            .expect("not poisoned")
            .push((tick, event, label.to_owned()));
    }

    fn ticks(&self, event: &str, label_prefix: &str) -> Vec<u64> {
        self.events
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, e, label)| *e == event && label.starts_with(label_prefix))
            .map(|(tick, ..)| *tick)
            .collect()
    }
}

/// `slow` sleeps `ms` and counts how many run at once; `echo` answers its
/// `text` at once.
#[derive(Clone)]
struct Tools(Arc<Seen>);

impl ServerHandler for Tools {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let label = arguments
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let seen = &self.0;
        match request.name.as_ref() {
            "slow" => {
                let now = seen.slow_running.fetch_add(1, Ordering::SeqCst) + 1;
                seen.slow_most.fetch_max(now, Ordering::SeqCst);
                seen.record("start", &label);
                let ms = arguments.get("ms").and_then(Value::as_u64).unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                seen.record("end", &label);
                seen.slow_running.fetch_sub(1, Ordering::SeqCst);
            }
            "echo" => seen.record("done", &label),
            other => return Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(label)]).into())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

struct Setup {
    requests: String,
    replies: Arc<dyn Inbox>,
    reply_address: String,
    outbox: SqsOutbox,
    counter: ApiCallCounter,
    seen: Arc<Seen>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    client: sqs::Client,
}

/// A server on a fresh LocalStack queue, configured by `limits`, whose
/// inbox's SQS calls are counted.
async fn start(
    prefix: &str,
    limits: impl FnOnce(QueueServerBuilder) -> QueueServerBuilder,
) -> Setup {
    let localstack = aws::localstack().await;
    let sdk = localstack.sdk_config().await;
    let client = sqs::client(&sdk);
    let create = |name: &str| {
        let client = client.clone();
        let name = unique_name(name);
        async move {
            sqs::create_queue(&client, &name, &SqsQueueOptions::default())
                .await
                .unwrap_or_else(|e| panic!("create queue {name}: {e}"))
        }
    };
    let requests = create(&format!("{prefix}-requests")).await;
    let reply_address = create(&format!("{prefix}-replies")).await;
    let counter = ApiCallCounter::new();
    let inbox = SqsInbox::open(sqs::client_with_counter(&sdk, &counter), &requests)
        .await
        .expect("open the request queue");
    let replies: Arc<dyn Inbox> = Arc::new(
        SqsInbox::open(client.clone(), &reply_address)
            .await
            .expect("open the reply queue"),
    );
    let seen = Arc::new(Seen::default());
    let tools = Tools(seen.clone());
    let shutdown = CancellationToken::new();
    let builder =
        QueueServer::builder(inbox, SqsOutbox::new(client.clone())).wait(Duration::from_secs(2));
    let server = limits(builder)
        .build(move || tools.clone())
        .spawn(shutdown.clone());
    Setup {
        requests,
        replies,
        reply_address,
        outbox: SqsOutbox::new(client.clone()),
        counter,
        seen,
        shutdown,
        server,
        client,
    }
}

impl Setup {
    /// Sends `tools/call` of `tool` with `arguments` as `client_id`, id `id`.
    async fn call(&self, client_id: &str, id: u64, tool: &str, arguments: Value) {
        let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":tool,"arguments":arguments}});
        self.outbox
            .send(
                &self.requests,
                QueueMessage::new(call.to_string())
                    .with_string("ReplyTo", self.reply_address.clone())
                    .with_string("ClientId", client_id),
            )
            .await
            .expect("request sent");
    }

    /// As `caller`: `slow` call 1 ("first", running `first_ms`), then, once
    /// it runs, `slow` call 2 ("second", 10 ms), so that the second is the
    /// one over a limit of 1.
    async fn second_slow_call_behind_a_first(&self, caller: &str, first_ms: u64) {
        self.call(caller, 1, "slow", json!({"label": "first", "ms": first_ms}))
            .await;
        let started = asyncmcp_testkit::eventually(Duration::from_secs(20), || {
            !self.seen.ticks("start", "first").is_empty()
        })
        .await;
        assert!(started, "the first call started");
        self.call(caller, 2, "slow", json!({"label": "second", "ms": 10}))
            .await;
    }

    /// Final responses by id until `count` have come, or `within` passes.
    async fn responses(&self, count: usize, within: Duration) -> HashMap<u64, Value> {
        let mut found = HashMap::new();
        let deadline = tokio::time::Instant::now() + within;
        while found.len() < count && tokio::time::Instant::now() < deadline {
            for delivery in self
                .replies
                .receive(10, Duration::from_secs(1))
                .await
                .expect("receive replies")
            {
                self.replies.ack(&delivery.receipt).await.expect("ack");
                let body: Value = serde_json::from_str(&delivery.message.body).expect("JSON");
                if let Some(id) = body.get("id").and_then(Value::as_u64) {
                    found.insert(id, body);
                }
            }
        }
        found
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("server stopped");
        for queue in [&self.requests, &self.reply_address] {
            let _ = sqs::delete_queue(&self.client, queue).await;
        }
    }
}

fn text(response: &Value) -> &str {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a text result: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_tool_waits_in_the_queue_and_other_tools_go_on() {
    let setup = start("limits", |builder| builder.tool_limit("slow", 2)).await;
    // The slow calls first, so the echo calls are behind them in the queue.
    let mut sends = tokio::task::JoinSet::new();
    let setup = Arc::new(setup);
    for i in 0..20u64 {
        let setup = setup.clone();
        sends.spawn(async move {
            setup
                .call(
                    "crowd",
                    i,
                    "slow",
                    json!({"label": format!("slow-{i}"), "ms": 1000}),
                )
                .await;
        });
    }
    while sends.join_next().await.is_some() {}
    for i in 100..200u64 {
        let setup = setup.clone();
        sends.spawn(async move {
            setup
                .call("crowd", i, "echo", json!({"label": format!("echo-{i}")}))
                .await;
        });
    }
    while sends.join_next().await.is_some() {}

    let responses = setup.responses(120, Duration::from_secs(45)).await;
    assert_eq!(responses.len(), 120, "every call answered");
    for i in 0..20 {
        assert_eq!(text(&responses[&i]), format!("slow-{i}"));
    }
    for i in 100..200 {
        assert_eq!(text(&responses[&i]), format!("echo-{i}"));
    }
    let seen = &setup.seen;
    let most = seen.slow_most.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} slow calls ran at once");
    assert_eq!(most, 2, "the slow calls did run two at once");
    // Every echo ran before the slow backlog drained: before the last slow
    // call even started (20 at two a second take ten seconds).
    let echoes = seen.ticks("done", "echo-");
    let slow_starts = seen.ticks("start", "slow-");
    assert_eq!((echoes.len(), slow_starts.len()), (100, 20));
    let last_echo = echoes.iter().max().copied().unwrap_or_default();
    let last_slow_start = slow_starts.iter().max().copied().unwrap_or_default();
    assert!(
        last_echo < last_slow_start,
        "an echo call finished only after the last slow call started ({last_echo} vs {last_slow_start})"
    );

    // The API calls the deferrals cost: a ChangeMessageVisibility each (no
    // call ran long enough for a heartbeat), and a share of the receives.
    let deferrals = setup.counter.get("ChangeMessageVisibility");
    let receives = setup.counter.get("ReceiveMessage");
    println!(
        "deferrals of the 18 calls over the limit: {deferrals} ChangeMessageVisibility; \
         {receives} ReceiveMessage for all 120 calls and their deferrals; all calls: {:?}",
        setup.counter.snapshot()
    );
    assert!(deferrals > 0, "calls over the limit were put back");
    assert!(
        deferrals <= 18 * 4,
        "{deferrals} deferrals for 18 calls over the limit: not sized to their wait"
    );
    let setup = Arc::into_inner(setup).expect("no sends left");
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waits_past_the_maximum_is_answered_with_an_error_naming_the_limit() {
    let setup = start("limits-wait", |builder| {
        builder
            .tool_limit("slow", 1)
            .max_limit_wait(Duration::from_secs(2))
    })
    .await;
    setup.second_slow_call_behind_a_first("waiter", 6000).await;
    let responses = setup.responses(2, Duration::from_secs(30)).await;
    let error = &responses[&2]["error"];
    assert_eq!(error["code"], json!(LIMIT_WAIT_EXCEEDED.0), "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message
            .starts_with("tool `slow` is at its limit of 1 call at once on this replica; waited "),
        "{message}"
    );
    assert_eq!(error["data"]["tool"], "slow");
    assert_eq!(
        text(&responses[&1]),
        "first",
        "the running call is not touched"
    );
    assert!(
        setup.seen.ticks("start", "second").is_empty(),
        "the call that gave up never ran"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_cap_holds_one_caller_and_lets_another_through() {
    let setup = start("limits-caller", |builder| builder.caller_limit(1)).await;
    setup
        .call(
            "greedy",
            1,
            "slow",
            json!({"label": "greedy-1", "ms": 3000}),
        )
        .await;
    let started = asyncmcp_testkit::eventually(Duration::from_secs(20), || {
        !setup.seen.ticks("start", "greedy-1").is_empty()
    })
    .await;
    assert!(started, "the first call started");
    setup
        .call("greedy", 2, "slow", json!({"label": "greedy-2", "ms": 10}))
        .await;
    setup
        .call("polite", 3, "echo", json!({"label": "polite"}))
        .await;
    let responses = setup.responses(3, Duration::from_secs(30)).await;
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert_eq!(text(&responses[&3]), "polite");
    let first_end = setup.seen.ticks("end", "greedy-1")[0];
    let second_start = setup.seen.ticks("start", "greedy-2")[0];
    let polite = setup.seen.ticks("done", "polite")[0];
    assert!(
        polite < first_end,
        "the other caller was served while the first was at its cap"
    );
    assert!(
        first_end < second_start,
        "the capped caller's second call ran only after its first ended"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferrals_by_this_replica_never_dead_letter_a_call() {
    let localstack = aws::localstack().await;
    let dead_letters = localstack.create_queue("limits-dlq").await;
    let dlq = dead_letters.clone();
    // One delivery allowed: any redelivery that counted would dead-letter.
    let setup = start("limits-dl", move |builder| {
        builder.tool_limit("slow", 1).dead_letter(dlq, 1)
    })
    .await;
    setup.second_slow_call_behind_a_first("patient", 4000).await;
    let responses = setup.responses(2, Duration::from_secs(30)).await;
    assert_eq!(text(&responses[&1]), "first");
    assert_eq!(
        text(&responses[&2]),
        "second",
        "the call put back ran in the end: {}",
        responses[&2]
    );
    let deferrals = setup.counter.get("ChangeMessageVisibility");
    assert!(deferrals >= 1, "the second call was put back");
    let client = localstack.sqs_client().await;
    assert_eq!(
        aws::queue_depth(&client, &dead_letters).await,
        0,
        "nothing dead-lettered after {deferrals} deferrals"
    );
    let _ = sqs::delete_queue(&client, &dead_letters).await;
    setup.stop().await;
}

//! `hostile`: a flood of malformed and hostile messages on the request queue
//! while a client makes ordinary calls.

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Outbox, QueueMessage};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common;
use crate::demo_tools::{DemoServer, DemoStats};

/// How many of each kind of hostile message are sent.
const EACH: usize = 60;

/// Words that would show internals in an error message sent to a stranger.
const INTERNALS: [&str; 8] = [
    "src/",
    ".rs:",
    "panicked",
    "serde",
    "at line",
    "backtrace",
    "aws_",
    "Service(",
];

/// The kinds of hostile message, each a body and the attributes it carries,
/// and whether the server answers it (with an error) at `replies`.
fn hostile_messages(replies: &str, i: usize) -> Vec<(&'static str, QueueMessage, bool)> {
    let request =
        |id: usize| json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":{}}).to_string();
    vec![
        (
            "not JSON",
            QueueMessage::new("{this is not json").with_string("ReplyTo", replies),
            true,
        ),
        (
            "not JSON-RPC",
            QueueMessage::new(json!({"id": i, "method": 7}).to_string())
                .with_string("ReplyTo", replies),
            true,
        ),
        (
            "nested 50 000 deep",
            QueueMessage::new("[".repeat(50_000) + &"]".repeat(50_000))
                .with_string("ReplyTo", replies),
            true,
        ),
        (
            "forged session",
            QueueMessage::new(request(i))
                .with_string("ReplyTo", replies)
                .with_string(
                    "SessionId",
                    format!("v1.{i}.eyJyIjoiaHR0cDovL2V2aWwifQ.AAAA"),
                ),
            true,
        ),
        (
            "foreign reply address",
            QueueMessage::new(request(i)).with_string(
                "ReplyTo",
                "https://sqs.us-east-1.amazonaws.com/999999999999/loot",
            ),
            false,
        ),
        (
            "path-escaping reply address",
            QueueMessage::new(request(i)).with_string("ReplyTo", format!("{replies}/../x")),
            false,
        ),
        ("no reply address", QueueMessage::new(request(i)), false),
        (
            "a response, not a request",
            QueueMessage::new(json!({"jsonrpc":"2.0","id":i,"result":{}}).to_string())
                .with_string("ReplyTo", replies),
            false,
        ),
        (
            "oversized session id",
            QueueMessage::new(request(i))
                .with_string("ReplyTo", replies)
                .with_string("SessionId", "A".repeat(20_000)),
            true,
        ),
    ]
}

/// Sends every kind of hostile message `EACH` times while a client makes 50
/// calls: every call is answered, every answerable message gets a JSON-RPC
/// error that shows no internals, the rest get nothing, and the request
/// queue ends empty.
pub async fn hostile() {
    let ls = common::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions::default();
    let requests = sqs::create_queue(&client, &common::unique_name("hostile"), &options)
        .await
        .expect("queue");
    let replies = sqs::create_queue(&client, &common::unique_name("hostile-replies"), &options)
        .await
        .expect("queue");
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(
        SqsInbox::open(client.clone(), &requests)
            .await
            .expect("open"),
        SqsOutbox::new(client.clone()),
    )
    .wait(Duration::from_secs(1))
    .build(DemoServer::factory(Arc::new(DemoStats::default())))
    .spawn(shutdown.clone());

    let outbox = SqsOutbox::new(client.clone());
    let kinds = hostile_messages(&replies, 0).len();
    let mut answerable = 0;
    let flood = {
        let mut sends = Vec::new();
        for i in 0..EACH {
            for (_, message, answered) in hostile_messages(&replies, i) {
                answerable += usize::from(answered);
                let outbox = outbox.clone();
                let requests = requests.clone();
                sends.push(async move { outbox.send(&requests, message).await });
            }
        }
        futures::future::join_all(sends)
    };
    let session = crate::process::connect(&client, &requests).await;
    let peer = session.peer().clone();
    let calls = async {
        let calls = (0..50).map(|i| {
            let peer = peer.clone();
            async move {
                let text = format!("call {i}");
                let request = CallToolRequestParams::new("echo").with_arguments(
                    json!({"text": text})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                );
                let answer =
                    tokio::time::timeout(Duration::from_secs(60), peer.call_tool(request)).await;
                matches!(answer, Ok(Ok(result)) if result.content.iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<String>() == text)
            }
        });
        futures::future::join_all(calls).await
    };
    let (sent, answered) = tokio::join!(flood, calls);
    assert!(sent.iter().all(Result::is_ok), "the flood was sent");
    let lost = answered.iter().filter(|ok| !**ok).count();
    session.cancel().await.expect("close");

    // Collect the error replies until the expected number arrived (or 60 s).
    let inbox = SqsInbox::open(client.clone(), &replies)
        .await
        .expect("open");
    let mut errors: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while errors.len() < answerable && tokio::time::Instant::now() < deadline {
        use asyncmcp::queue::Inbox;
        for delivery in inbox
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
        {
            let _ = inbox.ack(&delivery.receipt).await;
            errors.push(serde_json::from_str(&delivery.message.body).expect("JSON reply"));
        }
    }
    let leaking: Vec<&Value> = errors
        .iter()
        .filter(|reply| {
            let text = reply["error"]["message"].as_str().unwrap_or_default();
            INTERNALS.iter().any(|word| text.contains(word))
        })
        .collect();
    let not_errors = errors.iter().filter(|r| r.get("error").is_none()).count();

    let mut depth = usize::MAX;
    for _ in 0..100 {
        depth = common::queue_depth(&client, &requests).await;
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    server.await.expect("server");
    let _ = sqs::delete_queue(&client, &requests).await;
    let _ = sqs::delete_queue(&client, &replies).await;

    eprintln!(
        "hostile: {} hostile messages ({kinds} kinds), 50 calls, {lost} lost, {} error replies of {answerable} expected, {} leaking internals, {depth} left on the queue",
        kinds * EACH,
        errors.len(),
        leaking.len()
    );
    assert_eq!(lost, 0, "every call answered");
    assert_eq!(
        errors.len(),
        answerable,
        "every answerable message answered"
    );
    assert_eq!(not_errors, 0, "only errors were sent back");
    assert!(
        leaking.is_empty(),
        "error messages show internals: {leaking:?}"
    );
    assert_eq!(depth, 0, "the request queue ends empty");
}

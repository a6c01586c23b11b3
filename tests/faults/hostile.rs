//! `hostile`: a flood of malformed and hostile messages on the request queue
//! while a client makes ordinary calls.

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Outbox, QueueMessage};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::{aws, unique_name};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::sends::RecordingOutbox;

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
    "Service {",
];

/// What the server must send back for one kind of hostile message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A JSON-RPC error with this code for each message, with the
    /// message's id, or a null id when the body cannot be read.
    Error { code: i64, null_id: bool },
    /// Nothing, anywhere.
    Nothing,
}

/// One kind of hostile message.
struct Kind {
    name: &'static str,
    expect: Expect,
}

/// The kinds, in the order [`hostile_message`] numbers them.
const KINDS: [Kind; 9] = [
    Kind {
        name: "not JSON",
        expect: Expect::Error {
            code: -32700,
            null_id: true,
        },
    },
    Kind {
        name: "not JSON-RPC",
        expect: Expect::Error {
            code: -32600,
            null_id: false,
        },
    },
    Kind {
        name: "nested 50 000 deep",
        expect: Expect::Error {
            code: -32700,
            null_id: true,
        },
    },
    Kind {
        name: "forged session",
        // Refused for its session id: answered, but not correlated.
        expect: Expect::Error {
            code: -32600,
            null_id: true,
        },
    },
    Kind {
        name: "foreign reply address",
        expect: Expect::Nothing,
    },
    Kind {
        name: "path-escaping reply address",
        expect: Expect::Nothing,
    },
    Kind {
        name: "no reply address",
        expect: Expect::Nothing,
    },
    Kind {
        name: "a response, not a request",
        expect: Expect::Nothing,
    },
    Kind {
        name: "oversized session id",
        // Refused for its session id: answered, but not correlated.
        expect: Expect::Error {
            code: -32600,
            null_id: true,
        },
    },
];

/// The JSON-RPC id of the `i`th message of kind `kind`: each kind has ids of
/// its own, so that a reply shows which kind it answers.
fn message_id(kind: usize, i: usize) -> usize {
    kind * 1000 + i
}

/// The `i`th message of kind `kind`, whose replies (if any) go to `own`, the
/// kind's own queue.
fn hostile_message(kind: usize, i: usize, own: &str) -> QueueMessage {
    let id = message_id(kind, i);
    let request = json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":{}}).to_string();
    match KINDS[kind].name {
        "not JSON" => QueueMessage::new("{this is not json").with_string("ReplyTo", own),
        "not JSON-RPC" => QueueMessage::new(json!({"id": id, "method": 7}).to_string())
            .with_string("ReplyTo", own),
        "nested 50 000 deep" => {
            QueueMessage::new("[".repeat(50_000) + &"]".repeat(50_000)).with_string("ReplyTo", own)
        }
        "forged session" => QueueMessage::new(request)
            .with_string("ReplyTo", own)
            .with_string(
                "SessionId",
                format!("v1.{i}.eyJyIjoiaHR0cDovL2V2aWwifQ.AAAA"),
            ),
        "foreign reply address" => QueueMessage::new(request).with_string(
            "ReplyTo",
            "https://sqs.us-east-1.amazonaws.com/999999999999/loot",
        ),
        "path-escaping reply address" => {
            QueueMessage::new(request).with_string("ReplyTo", format!("{own}/../x"))
        }
        "no reply address" => QueueMessage::new(request),
        "a response, not a request" => {
            QueueMessage::new(json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string())
                .with_string("ReplyTo", own)
        }
        "oversized session id" => QueueMessage::new(request)
            .with_string("ReplyTo", own)
            .with_string("SessionId", "A".repeat(20_000)),
        other => unreachable!("no message for kind {other}"),
    }
}

/// Sends every kind of hostile message `EACH` times, each kind with its own
/// reply queue, while a client makes 50 calls: every call is answered; once
/// the request queue is empty, each kind's queue is drained and holds
/// exactly one JSON-RPC error per message of an answerable kind (the
/// expected code, the message's id, no internals) and nothing for the
/// kinds that must get none; nor did the server try to send anything, to
/// any address, for a message of those kinds (a foreign or path-escaping
/// address is nowhere a test can watch).
pub(crate) async fn hostile() {
    let ls = aws::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions::default();
    let requests = sqs::create_queue(&client, &unique_name("hostile"), &options)
        .await
        .expect("queue");
    // Each kind's own reply queue (unused by the kinds that name none of
    // ours).
    let mut own = Vec::new();
    for k in 0..KINDS.len() {
        let name = unique_name(&format!("hostile-kind{k}"));
        own.push(
            sqs::create_queue(&client, &name, &options)
                .await
                .expect("queue"),
        );
    }
    let shutdown = CancellationToken::new();
    // The server's sends are recorded, to see where it sent what.
    let server_sends = RecordingOutbox::new(SqsOutbox::new(client.clone()));
    let server = QueueServer::builder(
        SqsInbox::open(client.clone(), &requests)
            .await
            .expect("open"),
        server_sends.clone(),
    )
    .wait(Duration::from_secs(1))
    .build(DemoServer::factory(Arc::new(DemoStats::default())))
    .spawn(shutdown.clone());

    let outbox = SqsOutbox::new(client.clone());
    let flood = {
        let mut sends = Vec::new();
        for i in 0..EACH {
            for (k, own) in own.iter().enumerate() {
                let message = hostile_message(k, i, own);
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
    // A server sends its reply before it deletes the message: once the
    // request queue is empty, every reply it will send is in its queue.
    let mut depth = usize::MAX;
    for _ in 0..300 {
        depth = aws::queue_depth(&client, &requests).await;
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut replies: Vec<Vec<Value>> = Vec::new();
    for own in &own {
        replies.push(drain(&client, own).await);
    }
    shutdown.cancel();
    server.await.expect("server");
    let _ = sqs::delete_queue(&client, &requests).await;
    for queue in &own {
        let _ = sqs::delete_queue(&client, queue).await;
    }

    let all: Vec<&Value> = replies.iter().flatten().collect();
    // What the server tried to send for the messages of kind `k`, wherever
    // to: (address, body).
    let attempts = server_sends.attempts();
    let sent_for = |k: usize| -> Vec<(String, String)> {
        attempts
            .iter()
            .filter(|attempt| {
                let id = serde_json::from_str::<Value>(&attempt.body)
                    .ok()
                    .and_then(|body| body["id"].as_u64());
                id.is_some_and(|id| (0..EACH).any(|i| id == message_id(k, i) as u64))
            })
            .map(|attempt| (attempt.address.clone(), attempt.body.clone()))
            .collect()
    };
    let unanswerable_sends: usize = (0..KINDS.len())
        .filter(|k| KINDS[*k].expect == Expect::Nothing)
        .map(|k| sent_for(k).len())
        .sum();
    let leaking: Vec<&&Value> = all
        .iter()
        .filter(|reply| {
            let text = reply["error"]["message"].as_str().unwrap_or_default();
            INTERNALS.iter().any(|word| text.contains(word))
        })
        .collect();
    let per_kind: Vec<String> = KINDS
        .iter()
        .zip(&replies)
        .map(|(kind, got)| {
            let expected = match kind.expect {
                Expect::Error { .. } => EACH,
                Expect::Nothing => 0,
            };
            format!("{} {}/{expected}", kind.name, got.len())
        })
        .collect();
    eprintln!(
        "hostile: {} hostile messages ({} kinds), 50 calls, {lost} lost, {} error replies of {} expected ({}), {unanswerable_sends} sends for the kinds that get none, {} leaking internals, {depth} left on the queue",
        KINDS.len() * EACH,
        KINDS.len(),
        all.len(),
        KINDS
            .iter()
            .filter(|kind| kind.expect != Expect::Nothing)
            .count()
            * EACH,
        per_kind.join(", "),
        leaking.len()
    );
    assert_eq!(lost, 0, "every call answered");
    assert_eq!(depth, 0, "the request queue ends empty");
    for (k, (kind, got)) in KINDS.iter().zip(&replies).enumerate() {
        check_kind(k, kind, got);
    }
    for (k, kind) in KINDS.iter().enumerate() {
        if kind.expect == Expect::Nothing {
            let sent = sent_for(k);
            assert!(
                sent.is_empty(),
                "{}: the server sent (address, body): {sent:?}",
                kind.name
            );
        }
    }
    assert!(
        leaking.is_empty(),
        "error messages show internals: {leaking:?}"
    );
}

/// Checks the replies `got` in the own queue of kind `k`.
fn check_kind(k: usize, kind: &Kind, got: &[Value]) {
    match kind.expect {
        Expect::Nothing => assert!(got.is_empty(), "{}: answered: {got:?}", kind.name),
        Expect::Error { code, null_id } => {
            let wrong: Vec<_> = got
                .iter()
                .filter(|reply| reply["error"]["code"] != json!(code))
                .collect();
            assert!(
                wrong.is_empty(),
                "{}: replies other than an error {code}: {wrong:?}",
                kind.name
            );
            let mut ids: Vec<Value> = got.iter().map(|reply| reply["id"].clone()).collect();
            let mut expected: Vec<Value> = (0..EACH)
                .map(|i| {
                    if null_id {
                        Value::Null
                    } else {
                        json!(message_id(k, i))
                    }
                })
                .collect();
            let key = |id: &Value| id.as_u64().unwrap_or(0);
            ids.sort_by_key(key);
            expected.sort_by_key(key);
            assert_eq!(
                ids, expected,
                "{}: one reply per message, with its id",
                kind.name
            );
        }
    }
}

/// Receives and deletes everything in `queue` until a receive finds it
/// empty twice in a row, each reply parsed as JSON.
async fn drain(client: &sqs::Client, queue: &str) -> Vec<Value> {
    use asyncmcp::queue::Inbox;
    let inbox = SqsInbox::open(client.clone(), queue).await.expect("open");
    let mut got = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let deliveries = inbox
            .receive(10, Duration::from_millis(500))
            .await
            .expect("receive");
        empty = if deliveries.is_empty() { empty + 1 } else { 0 };
        for delivery in deliveries {
            let _ = inbox.ack(&delivery.receipt).await;
            got.push(serde_json::from_str(&delivery.message.body).expect("JSON reply"));
        }
    }
    got
}

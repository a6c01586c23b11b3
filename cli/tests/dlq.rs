//! `asyncmcp dlq show|redrive` on LocalStack: a request dead-lettered by a
//! real `QueueServer`, hostile and malformed messages, duplicates, FIFO,
//! and errors.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp_testkit::aws::{self, queue_depth};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::unique_name;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use common::asyncmcp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn string(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("an attribute")
}

fn number(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(value)
        .build()
        .expect("an attribute")
}

/// Sends `body` with `attributes` to `url`.
async fn send(
    client: &sqs::Client,
    url: &str,
    body: &str,
    attributes: &[(&str, MessageAttributeValue)],
) {
    let mut request = client.send_message().queue_url(url).message_body(body);
    for (name, value) in attributes {
        request = request.message_attributes(*name, value.clone());
    }
    if url.ends_with(".fifo") {
        let id = unique_name("m");
        request = request.message_group_id("g").message_deduplication_id(id);
    }
    request.send().await.expect("send");
}

/// Every message now in `url`, received (and left hidden for a minute).
async fn receive_all(client: &sqs::Client, url: &str) -> Vec<Message> {
    let mut all = Vec::new();
    loop {
        let batch = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Waits up to 20 s for `url` to hold `depth` messages.
async fn wait_for_depth(client: &sqs::Client, url: &str, depth: usize) {
    for _ in 0..200 {
        if queue_depth(client, url).await == depth {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never held {depth} message(s)");
}

fn text<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .message_attributes
        .as_ref()?
        .get(name)?
        .string_value
        .as_deref()
}

/// The request a worker took and never answered, dead-lettered by a
/// `QueueServer` (`dead_letter(…, 1)`) on its second delivery, is listed
/// with its reason, receive count, method and caller, listed again (the
/// listing left it in place), and sent back to the request queue without
/// the server's attributes.
#[tokio::test]
async fn a_request_a_server_dead_lettered_is_listed_and_sent_back() {
    let localstack = aws::localstack().await;
    let client = localstack.sqs_client().await;
    let requests = localstack.create_queue("cli-dlq-requests").await;
    let dead_letters = localstack.create_queue("cli-dlq-dead").await;
    let replies = localstack.create_queue("cli-dlq-replies").await;
    let body = json!({"jsonrpc":"2.0","id":90,"method":"tools/call",
        "params":{"name":"add","arguments":{"a":1,"b":1}}})
    .to_string();
    let attributes = [
        ("MessageType", string("jsonrpc")),
        ("Method", string("tools/call")),
        ("RequestId", string("90")),
        ("ClientId", string("cli-dlq-client")),
        ("ReplyTo", string(&replies)),
    ];
    send(&client, &requests, &body, &attributes).await;

    // A worker takes it and dies: received once, never answered.
    let taken = receive_all(&client, &requests).await;
    assert_eq!(taken.len(), 1);
    client
        .change_message_visibility()
        .queue_url(&requests)
        .receipt_handle(taken[0].receipt_handle.clone().unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .expect("release");

    let stats = Arc::new(DemoStats::default());
    let inbox = SqsInbox::open(client.clone(), &requests)
        .await
        .expect("open");
    let server = QueueServer::builder(inbox, SqsOutbox::new(client.clone()))
        .dead_letter(dead_letters.clone(), 1)
        .build(DemoServer::factory(stats.clone()));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run(shutdown.clone()));
    wait_for_depth(&client, &dead_letters, 1).await;
    wait_for_depth(&client, &requests, 0).await;
    shutdown.cancel();
    running.await.expect("the server stops");
    assert_eq!(
        stats.calls.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "never run"
    );

    let show = asyncmcp(localstack, &["dlq", "show", "--queue-url", &dead_letters])
        .await
        .ok();
    for expected in [
        "  reason:    delivered 2 times; no earlier attempt ended with an answer",
        "  receives:  2\n",
        "  method:    tools/call\n",
        "  id:        90\n",
        "  client:    cli-dlq-client\n",
        &format!("  reply to:  {replies}\n"),
    ] {
        assert!(show.stdout.contains(expected), "{expected:?} in {show:#?}");
    }
    assert!(show.stderr.contains("1 message(s) in"), "{show:#?}");

    // Left in place, and visible at once: listed again, as JSON.
    let json = asyncmcp(
        localstack,
        &["dlq", "show", "--queue-url", &dead_letters, "--json"],
    )
    .await
    .ok();
    let listed: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["receive_count"], 2);
    assert_eq!(listed[0]["method"], "tools/call");
    assert_eq!(listed[0]["request_id"], "90");
    assert_eq!(listed[0]["client_id"], "cli-dlq-client");
    assert_eq!(listed[0]["reply_to"], replies.as_str());

    let redrive = asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &requests,
        ],
    )
    .await
    .ok();
    assert!(
        redrive.stdout.contains("  method:    tools/call\n"),
        "{redrive:#?}"
    );
    assert!(
        redrive.stderr.contains("sent 1 request(s) back"),
        "{redrive:#?}"
    );
    assert_eq!(queue_depth(&client, &dead_letters).await, 0, "removed");
    let back = receive_all(&client, &requests).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body.as_deref(), Some(body.as_str()));
    for (name, value) in &attributes {
        assert_eq!(
            text(&back[0], name),
            value.string_value.as_deref(),
            "{name}"
        );
    }
    assert_eq!(text(&back[0], "DeadLetterReason"), None);
    assert_eq!(text(&back[0], "ReceiveCount"), None);

    for url in [&requests, &dead_letters, &replies] {
        sqs::delete_queue(&client, url).await.ok();
    }
}

/// What anyone able to send to the dead-letter queue can put there:
/// terminal controls, forged record lines, bidirectional overrides, huge
/// values, bodies that are not JSON, binary attributes. `show` prints it
/// escaped and clipped (and its JSON complete but terminal-safe), and
/// `redrive` carries it back unchanged, binary attributes included.
#[tokio::test]
async fn hostile_and_malformed_dead_letters_are_printed_safely() {
    let localstack = aws::localstack().await;
    let client = localstack.sqs_client().await;
    let requests = localstack.create_queue("cli-hostile-requests").await;
    let dead_letters = localstack.create_queue("cli-hostile-dead").await;
    // SQS refuses C0 controls but \t, \n and \r; C1 controls (U+009B is
    // CSI to some terminals) and the bidirectional overrides pass.
    let reason = "ok\r\n  method:    forged\u{9b}2J\u{9d}0;pwned\u{9c}";
    let method = "tools/call\u{202e}exe.txt\u{200b}";
    let client_id = "c".repeat(5_000);
    send(
        &client,
        &dead_letters,
        r#"{"jsonrpc":"2.0","id":"x\u001b[31m","method":"ping"}"#,
        &[
            ("DeadLetterReason", string(reason)),
            ("Method", string(method)),
            ("ClientId", string(&client_id)),
            ("ReceiveCount", number("99999999999999999999999999")),
        ],
    )
    .await;
    let blob = MessageAttributeValue::builder()
        .data_type("Binary")
        .binary_value(Blob::new(vec![0, 159, 27, 255]))
        .build()
        .expect("an attribute");
    send(&client, &dead_letters, "not json {", &[("Blob", blob)]).await;

    let show = asyncmcp(localstack, &["dlq", "show", "--queue-url", &dead_letters])
        .await
        .ok();
    let out = &show.stdout;
    assert!(
        !out.contains([
            '\r', '\u{1b}', '\u{9b}', '\u{9c}', '\u{9d}', '\u{202e}', '\u{200b}'
        ]),
        "{out:?}"
    );
    assert_eq!(out.matches("\n  reason:").count(), 2, "two records: {out}");
    assert_eq!(
        out.matches("\n  method:").count(),
        2,
        "no forged line: {out}"
    );
    assert!(out.contains(r"ok\r\n  method:    forged\u{9b}2J"), "{out}");
    assert!(out.contains(r"tools/call\u{202e}exe.txt\u{200b}"), "{out}");
    assert!(out.contains(r#"  id:        x\u{1b}[31m"#), "{out}");
    assert!(out.lines().all(|line| line.chars().count() < 300), "{out}");
    assert!(
        out.contains("  receives:  -\n"),
        "an unreadable count: {out}"
    );

    let json = asyncmcp(
        localstack,
        &["dlq", "show", "--queue-url", &dead_letters, "--json"],
    )
    .await
    .ok();
    assert!(
        !json.stdout.contains([
            '\r', '\u{1b}', '\u{9b}', '\u{9c}', '\u{9d}', '\u{202e}', '\u{200b}'
        ]),
        "{}",
        json.stdout
    );
    let listed: Vec<Value> = serde_json::from_str(&json.stdout).expect("JSON");
    let hostile = listed
        .iter()
        .find(|record| record["reason"].is_string())
        .expect("the hostile record");
    assert_eq!(hostile["reason"], reason, "complete and exact");
    assert_eq!(hostile["method"], method);
    assert_eq!(hostile["client_id"], client_id.as_str());
    assert_eq!(hostile["request_id"], "x\u{1b}[31m");

    asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &requests,
        ],
    )
    .await
    .ok();
    assert_eq!(queue_depth(&client, &dead_letters).await, 0);
    let back = receive_all(&client, &requests).await;
    assert_eq!(back.len(), 2);
    let malformed = back
        .iter()
        .find(|m| m.body.as_deref() == Some("not json {"))
        .expect("the malformed one");
    let blob = malformed
        .message_attributes
        .as_ref()
        .and_then(|a| a.get("Blob"))
        .and_then(|b| b.binary_value.as_ref())
        .map(|b| b.as_ref().to_vec());
    assert_eq!(blob, Some(vec![0, 159, 27, 255]), "binary kept");

    for url in [&requests, &dead_letters] {
        sqs::delete_queue(&client, url).await.ok();
    }
}

/// Two dead-letter copies of one request (or one that failed again at once
/// after being sent back): one is sent back, the other left, so that a
/// request failing at once cannot go round for ever. `--max` bounds a run.
#[tokio::test]
async fn redrive_sends_a_request_back_once_and_stops_at_max() {
    let localstack = aws::localstack().await;
    let client = localstack.sqs_client().await;
    let requests = localstack.create_queue("cli-once-requests").await;
    let dead_letters = localstack.create_queue("cli-once-dead").await;
    let copy = |reason: &str, client_id: &str| {
        [
            ("DeadLetterReason", string(reason)),
            ("ClientId", string(client_id)),
        ]
    };
    for (reason, client_id) in [("first", "a"), ("again", "a"), ("other", "b")] {
        send(
            &client,
            &dead_letters,
            r#"{"id":1}"#,
            &copy(reason, client_id),
        )
        .await;
    }
    let once = asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &requests,
        ],
    )
    .await
    .ok();
    assert!(once.stderr.contains("sent 2 request(s) back"), "{once:#?}");
    assert!(once.stderr.contains("left 1 message(s)"), "{once:#?}");
    let back = receive_all(&client, &requests).await;
    let mut callers: Vec<&str> = back.iter().filter_map(|m| text(m, "ClientId")).collect();
    callers.sort_unstable();
    assert_eq!(callers, ["a", "b"]);
    let left = receive_all(&client, &dead_letters).await;
    assert_eq!(left.len(), 1);
    assert_eq!(text(&left[0], "ClientId"), Some("a"));

    // Two more (the left copy is hidden by the receive above): a run with
    // --max 1 moves one of them.
    for client_id in ["c", "d"] {
        send(
            &client,
            &dead_letters,
            r#"{"id":1}"#,
            &copy("why", client_id),
        )
        .await;
    }
    let one = asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &requests,
            "--max",
            "1",
        ],
    )
    .await
    .ok();
    assert!(one.stderr.contains("sent 1 request(s) back"), "{one:#?}");
    assert_eq!(one.stdout.matches("\n  reason:").count(), 1, "{one:#?}");
    // Depths count hidden messages too: a's and b's from the first run.
    assert_eq!(queue_depth(&client, &requests).await, 3);
    assert_eq!(queue_depth(&client, &dead_letters).await, 2);

    for url in [&requests, &dead_letters] {
        sqs::delete_queue(&client, url).await.ok();
    }
}

/// To a FIFO request queue, each copy gets a message group of its own.
#[tokio::test]
async fn redrive_to_a_fifo_queue() {
    let localstack = aws::localstack().await;
    let client = localstack.sqs_client().await;
    let name = format!("{}.fifo", unique_name("cli-dlq-fifo"));
    let fifo = SqsQueueOptions::default().with_fifo(true);
    let (requests, dead_letters) = sqs::create_queue_with_dead_letter(&client, &name, &fifo, 2)
        .await
        .expect("FIFO queues");
    for client_id in ["a", "b"] {
        let attributes = [
            ("DeadLetterReason", string("why")),
            ("ClientId", string(client_id)),
        ];
        send(&client, &dead_letters, r#"{"id":1}"#, &attributes).await;
    }
    asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &requests,
        ],
    )
    .await
    .ok();
    let back = receive_all(&client, &requests).await;
    assert_eq!(back.len(), 2, "both, in groups of their own");
    let groups: HashMap<&str, &str> = back
        .iter()
        .map(|m| {
            let group = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .map_or("", String::as_str);
            (text(m, "ClientId").unwrap_or_default(), group)
        })
        .collect();
    assert_eq!(groups.len(), 2);
    assert!(
        groups.values().all(|g| g.starts_with("redrive-")),
        "{groups:?}"
    );
    assert_ne!(groups["a"], groups["b"]);

    for url in [&requests, &dead_letters] {
        sqs::delete_queue(&client, url).await.ok();
    }
}

/// Bad URLs, missing queues and a redrive into the dead-letter queue itself
/// fail with exit code 1 and a clear message, and move nothing.
#[tokio::test]
async fn errors_exit_non_zero_and_move_nothing() {
    let localstack = aws::localstack().await;
    let client = localstack.sqs_client().await;
    let dead_letters = localstack.create_queue("cli-errors-dead").await;
    send(&client, &dead_letters, "{}", &[]).await;
    let missing = format!(
        "{}/queue/us-east-1/000000000000/{}",
        localstack.endpoint,
        unique_name("cli-missing")
    );

    asyncmcp(localstack, &["dlq", "show", "--queue-url", "not-a-url"])
        .await
        .failed_saying("--queue-url \"not-a-url\" is not an SQS queue URL");
    asyncmcp(
        localstack,
        &["dlq", "show", "--queue-url", "http://x/1/\u{9b}2J"],
    )
    .await
    .failed_saying(r"\u{9b}2J");
    asyncmcp(localstack, &["dlq", "show", "--queue-url", &missing])
        .await
        .failed_saying("does not exist");
    asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &missing,
        ],
    )
    .await
    .failed_saying("--to");
    asyncmcp(
        localstack,
        &[
            "dlq",
            "redrive",
            "--queue-url",
            &dead_letters,
            "--to",
            &dead_letters,
        ],
    )
    .await
    .failed_saying("the dead-letter queue itself");
    assert_eq!(
        receive_all(&client, &dead_letters).await.len(),
        1,
        "still there, and visible"
    );

    sqs::delete_queue(&client, &dead_letters).await.ok();
}

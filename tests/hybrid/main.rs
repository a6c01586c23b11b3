//! The StreamableHTTP+webhook hybrid: rmcp's Streamable HTTP server (the demo
//! tools) behind `HybridLayer`, driven by Python asyncmcp 0.2.1's
//! `streamable_http_webhook_client` and by a raw HTTP client. Loopback only:
//! every webhook is this test's own listener.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use asyncmcp::MemoryBroker;
use asyncmcp::hybrid::HybridLayer;
use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::webhook::{WebhookPolicy, WebhookSigner, WebhookVerifier};
use asyncmcp::queue::{Inbox, Outbox};
use serde_json::{Value, json};

use support::{
    Client, Counter, Server, Webhook, call, initialize, loopback_policy, outbox, text_of,
    wait_until,
};

/// Python asyncmcp 0.2.1's StreamableHTTP+webhook client against the
/// hybrid: echo on the POST's stream; add, fail (an isError result), hash
/// (a JSON-RPC error) and sleep (progress, then the result) at its webhook,
/// each POST answered 202.
#[tokio::test]
async fn python_streamable_http_webhook_client_calls_our_hybrid() {
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_hybrid_client.py");
    let run = tokio::process::Command::new(asyncmcp_testkit::py_peer::py_peer_python())
        .arg(&script)
        .args(["--server-url", &server.url, "--timeout", "60"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("py_hybrid_client.py ran over 90 s")
        .expect("spawning py_hybrid_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "py_hybrid_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let find = |key: &str| {
        lines
            .iter()
            .find_map(|line| line.get(key).cloned())
            .unwrap_or_else(|| panic!("no {key:?} line in {lines:?}"))
    };
    assert_eq!(find("session"), json!(true));
    assert_eq!(
        find("tools"),
        json!(["add", "echo", "fail", "hash", "roots", "sleep"])
    );
    assert_eq!(find("echo"), json!("hello over the hybrid"));
    assert_eq!(find("add"), json!("5"));
    assert_eq!(find("fail"), json!({"isError": true, "text": "boom"}));
    let error = find("error");
    assert_eq!(error["code"], json!(-32602), "{error}");
    assert_eq!(find("progress"), json!(4), "{lines:?}");
    assert_eq!(find("sleep"), json!("slept 200 ms"));
    // The webhook tools' POSTs were answered 202 (the exchange ended), the
    // ordinary tool's 200 (its stream).
    assert_eq!(
        find("statuses"),
        json!({"echo": 200, "add": 202, "fail": 202, "hash": 202, "sleep": 202})
    );
    // What reached the webhook, in order: add, fail and hash's answers, then
    // sleep's four progress notifications before its result.
    let progress = "notifications/progress";
    assert_eq!(
        find("webhook"),
        json!([
            "response", "response", "response", progress, progress, progress, progress, "response"
        ])
    );
    let session = find("session_id");
    let sessions = find("webhook_sessions");
    assert!(
        sessions
            .as_array()
            .is_some_and(|all| all.iter().all(|s| *s == session)),
        "{sessions} vs {session}"
    );
    // The client deleted its session on the way out.
    wait_until(|| server.layer.sessions() == 0).await;
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook call is acknowledged 202 with an empty body; its progress
/// notifications and then its result reach the webhook in order, signed
/// (the signatures verify), with Python's headers.
#[tokio::test]
async fn a_webhook_call_is_acknowledged_and_its_messages_arrive_signed_in_order() {
    let mut webhook = Webhook::start(0).await;
    let signer = WebhookSigner::new(SECRET).expect("a secret");
    let server = Server::start(HybridLayer::builder(outbox(
        loopback_policy(),
        Some(signer),
    )))
    .await;
    let mut client = Client::new(&server);
    client.handshake(Some(&webhook.url)).await;
    let session = client.session.clone().expect("a session");
    assert_eq!(server.layer.sessions(), 1);

    let mut sleep = call(7, "sleep", json!({"ms": 200}));
    sleep["params"]["_meta"] = json!({"progressToken": "p-7"});
    let answer = client.post(&sleep).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert!(answer.text.is_empty(), "{answer:?}");
    assert_eq!(answer.headers["mcp-session-id"], session.as_str());

    let verifier = WebhookVerifier::new(SECRET).expect("a secret");
    let mut ids = Vec::new();
    for sequence in 1..=5 {
        let delivery = webhook.next().await;
        let id = verifier
            .verify(&delivery.headers, delivery.raw.as_bytes())
            .unwrap_or_else(|error| panic!("delivery {sequence} does not verify: {error}"));
        ids.push(id);
        assert_eq!(delivery.headers["mcp-session-id"], session.as_str());
        assert_eq!(delivery.headers["x-client-id"], "raw-hybrid-client");
        assert_eq!(
            delivery.headers["x-sequence"],
            sequence.to_string().as_str()
        );
        if sequence < 5 {
            assert_eq!(delivery.body["method"], "notifications/progress");
            assert_eq!(delivery.body["params"]["progressToken"], "p-7");
            assert_eq!(delivery.headers["x-method"], "notifications/progress");
            assert!(delivery.headers.get("x-request-id").is_none());
        } else {
            assert_eq!(delivery.body["id"], 7, "{:?}", delivery.body);
            assert_eq!(text_of(&delivery.body), "slept 200 ms");
            assert!(delivery.headers.get("x-method").is_none());
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every delivery has its own webhook-id");
    wait_until(|| server.layer.detached() == 0).await;
}

/// A webhook that answers 503 twice and then accepts gets the result
/// exactly once.
#[tokio::test]
async fn a_webhook_that_fails_twice_then_accepts_gets_the_result_once() {
    let mut webhook = Webhook::start(2).await;
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let mut client = Client::new(&server);
    client.handshake(Some(&webhook.url)).await;
    let answer = client.call(3, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let delivery = webhook.next().await;
    assert_eq!(delivery.body["id"], 3);
    assert_eq!(text_of(&delivery.body), "5");
    wait_until(|| server.layer.detached() == 0).await;
    assert_eq!(webhook.attempts.load(Ordering::SeqCst), 3);
    assert!(
        webhook.deliveries.try_recv().is_err(),
        "the result was delivered once"
    );
}

/// A webhook down for good: the call's result goes to the dead-letter
/// queue with the reason and the webhook, nothing lost.
#[tokio::test]
async fn a_webhook_down_for_good_has_the_result_dead_lettered() {
    let webhook = Webhook::start(usize::MAX).await;
    let broker = MemoryBroker::new();
    let dead = broker.create_queue("hybrid-dead", MemoryQueueOptions::default());
    let dead_letter: Arc<dyn Outbox> = Arc::new(broker.outbox());
    let server = Server::start(
        HybridLayer::builder(outbox(loopback_policy(), None)).dead_letter(dead_letter, &dead),
    )
    .await;
    let mut client = Client::new(&server);
    client.handshake(Some(&webhook.url)).await;
    let answer = client.call(4, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let inbox = broker.inbox(&dead).expect("the dead-letter queue");
    let moved = inbox
        .receive(1, Duration::from_secs(10))
        .await
        .expect("receive")
        .pop()
        .expect("the result dead-lettered within 10 s");
    let body: Value = serde_json::from_str(&moved.message.body).expect("JSON");
    assert_eq!(body["id"], 4);
    assert_eq!(text_of(&body), "2");
    let reason = moved
        .message
        .attribute("DeadLetterReason")
        .expect("a reason");
    assert!(reason.contains("503"), "{reason}");
    assert_eq!(
        moved.message.attribute("ReplyTo"),
        Some(webhook.url.as_str())
    );
    assert_eq!(
        moved.message.attribute("McpSessionId"),
        client.session.as_deref()
    );
    assert_eq!(webhook.attempts.load(Ordering::SeqCst), 4);
}

/// SSRF: a webhook on a loopback address, loopback not allowed. A literal
/// address refuses the `initialize` (400, JSON-RPC -32602, no session); a
/// name resolving to it passes the URL check, but the delivery is refused
/// at connect time and dead-lettered. The listener sees no connection.
#[tokio::test]
async fn a_webhook_on_a_forbidden_address_is_never_contacted() {
    let literal = Counter::start("127.0.0.1").await;
    let named = Counter::start("localhost").await;
    let policy = WebhookPolicy::prefixes(["http://"]).allow_http(true);
    let broker = MemoryBroker::new();
    let dead = broker.create_queue("hybrid-ssrf-dead", MemoryQueueOptions::default());
    let dead_letter: Arc<dyn Outbox> = Arc::new(broker.outbox());
    let server =
        Server::start(HybridLayer::builder(outbox(policy, None)).dead_letter(dead_letter, &dead))
            .await;

    let mut client = Client::new(&server);
    let refused = client.handshake(Some(&literal.url)).await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.messages[0]["id"], 0);
    assert_eq!(refused.messages[0]["error"]["code"], -32602);
    let message = refused.messages[0]["error"]["message"]
        .as_str()
        .expect("text");
    assert!(message.contains("webhookUrl refused"), "{message}");
    assert!(refused.headers.get("mcp-session-id").is_none());
    assert_eq!(server.layer.sessions(), 0);

    let mut client = Client::new(&server);
    client.handshake(Some(&named.url)).await;
    let answer = client.call(5, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let inbox = broker.inbox(&dead).expect("the dead-letter queue");
    let moved = inbox
        .receive(1, Duration::from_secs(10))
        .await
        .expect("receive")
        .pop()
        .expect("the result dead-lettered within 10 s");
    let reason = moved
        .message
        .attribute("DeadLetterReason")
        .expect("a reason");
    assert!(
        reason.contains("ForbiddenAddress") || reason.contains("loopback"),
        "{reason}"
    );
    assert_eq!(literal.connections.load(Ordering::SeqCst), 0);
    assert_eq!(named.connections.load(Ordering::SeqCst), 0);
}

/// A webhook tool in a session that named no webhook is answered on the
/// POST's own stream, like any tool.
#[tokio::test]
async fn a_webhook_tool_without_a_webhook_answers_on_its_stream() {
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let mut client = Client::new(&server);
    client.handshake(None).await;
    assert_eq!(server.layer.sessions(), 0);
    let answer = client.call(2, "add", json!({"a": 20, "b": 22})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let result = answer
        .messages
        .iter()
        .find(|message| message["id"] == 2)
        .expect("the result on the stream");
    assert_eq!(text_of(result), "42");
}

/// At most `max_detached` calls are detached at once: one more is refused
/// 503 with Retry-After before it runs; once the first is delivered, calls
/// are taken again.
#[tokio::test]
async fn the_bound_on_detached_calls_refuses_with_503() {
    let mut webhook = Webhook::start(0).await;
    let server = Server::start(
        HybridLayer::builder(outbox(loopback_policy(), None))
            .max_detached(1)
            .retry_after(Duration::from_secs(2)),
    )
    .await;
    let mut client = Client::new(&server);
    client.handshake(Some(&webhook.url)).await;
    let slow = client.call(10, "sleep", json!({"ms": 1500})).await;
    assert_eq!(slow.status, 202, "{slow:?}");
    let refused = client.call(11, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.headers["retry-after"], "2");
    assert_eq!(refused.messages[0]["id"], 11);
    // An ordinary tool is not bounded by it.
    let echo = client.call(12, "echo", json!({"text": "still here"})).await;
    assert_eq!(echo.status, 200, "{echo:?}");
    loop {
        if webhook.next().await.body["id"] == 10 {
            break;
        }
    }
    wait_until(|| server.layer.detached() == 0).await;
    let again = client.call(13, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(webhook.next().await.body["id"], 13);
}

/// An `initialize` that names an existing session cannot attach its webhook
/// to it: the session's deliveries still go to its own webhook; a DELETE
/// forgets the session's webhook.
#[tokio::test]
async fn an_initialize_naming_another_session_attaches_no_webhook() {
    let mut own = Webhook::start(0).await;
    let mut thief = Webhook::start(0).await;
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let mut client = Client::new(&server);
    client.handshake(Some(&own.url)).await;
    let mut forger = Client::new(&server);
    forger.session = client.session.clone();
    let forged = forger.post(&initialize(Some(&thief.url))).await;
    assert_ne!(forged.status, 202, "{forged:?}");
    assert_eq!(server.layer.sessions(), 1);

    assert_eq!(
        client.call(1, "add", json!({"a": 1, "b": 2})).await.status,
        202
    );
    assert_eq!(text_of(&own.next().await.body), "3");
    assert!(thief.deliveries.try_recv().is_err());

    client.delete_session().await;
    assert_eq!(server.layer.sessions(), 0);
    // The deleted session is unknown to the inner service: its 404 passes
    // through unchanged, and nothing is detached.
    let gone = client.call(2, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(gone.status, 404, "{gone:?}");
}

/// A body over the limit is refused 413 before anything runs.
#[tokio::test]
async fn a_huge_body_is_refused() {
    let server = Server::start(
        HybridLayer::builder(outbox(loopback_policy(), None)).max_body_bytes(64 * 1024),
    )
    .await;
    let client = Client::new(&server);
    let huge = call(1, "echo", json!({"text": "x".repeat(100 * 1024)}));
    let answer = client.post(&huge).await;
    assert_eq!(answer.status, 413);
}

/// A detached call whose session is deleted before it ends: its stream ends
/// without a result, and the webhook gets a JSON-RPC error for it instead of
/// silence; its detached slot is freed.
#[tokio::test]
async fn a_call_whose_session_ends_first_gets_an_error_at_the_webhook() {
    let mut webhook = Webhook::start(0).await;
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let mut client = Client::new(&server);
    client.handshake(Some(&webhook.url)).await;
    let answer = client.call(21, "sleep", json!({"ms": 3000})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    client.delete_session().await;
    let delivery = webhook.next().await;
    assert_eq!(delivery.body["id"], 21, "{:?}", delivery.body);
    assert_eq!(
        delivery.body["error"]["code"], -32603,
        "{:?}",
        delivery.body
    );
    wait_until(|| server.layer.detached() == 0).await;
}

/// A detached call the client cancels (`notifications/cancelled`) frees its
/// slot; the handler stops and, as MCP says of a cancelled request, no
/// response follows at the webhook.
#[tokio::test]
async fn a_cancelled_webhook_call_frees_its_slot_and_gets_no_response() {
    let mut webhook = Webhook::start(0).await;
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let mut client = Client::new(&server);
    client.handshake(Some(&webhook.url)).await;
    let answer = client.call(31, "sleep", json!({"ms": 4000})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":31,"reason":"changed my mind"}});
    assert_eq!(client.post(&cancel).await.status, 202);
    wait_until(|| server.layer.detached() == 0).await;
    // The next call's result is the next thing the webhook gets.
    assert_eq!(
        client.call(32, "add", json!({"a": 1, "b": 1})).await.status,
        202
    );
    let delivery = webhook.next().await;
    assert_eq!(delivery.body["id"], 32, "{:?}", delivery.body);
}

/// Only the session that made a call can cancel it: another session's
/// `notifications/cancelled` naming the same id neither stops the call nor
/// silences the error its caller gets when the call's session ends.
#[tokio::test]
async fn another_session_cannot_cancel_a_call() {
    let mut webhook = Webhook::start(0).await;
    let server = Server::start(HybridLayer::builder(outbox(loopback_policy(), None))).await;
    let mut owner = Client::new(&server);
    owner.handshake(Some(&webhook.url)).await;
    let mut other = Client::new(&server);
    other.handshake(None).await;
    assert_eq!(
        owner.call(41, "sleep", json!({"ms": 3000})).await.status,
        202
    );
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":41}});
    assert_eq!(other.post(&cancel).await.status, 202);
    assert_eq!(server.layer.detached(), 1);
    owner.delete_session().await;
    let delivery = webhook.next().await;
    assert_eq!(delivery.body["id"], 41, "{:?}", delivery.body);
    assert_eq!(
        delivery.body["error"]["code"], -32603,
        "{:?}",
        delivery.body
    );
}

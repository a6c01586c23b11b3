//! A `QueueServer` taking requests over HTTP (the webhook inbox) and
//! answering at the caller's webhook (the webhook outbox), driven by a raw
//! HTTP client the way Python asyncmcp's webhook client drives it. Loopback
//! only: the receivers are this test's own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::webhook::{
    WebhookInbox, WebhookInboxBuilder, WebhookOutbox, WebhookPolicy, WebhookSigner, WebhookVerifier,
};
use asyncmcp::queue::{Outbox, QueueMessage, RoutingOutbox};
use asyncmcp::{MemoryBroker, QueueServer};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One reply POSTed to the test's webhook.
#[derive(Debug)]
struct Reply {
    headers: HeaderMap,
    body: Value,
}

/// The test's webhook on 127.0.0.1: every POST to `/hooks/mcp` lands in
/// `replies`.
struct Webhook {
    url: String,
    replies: mpsc::UnboundedReceiver<Reply>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start() -> Self {
        let (tx, replies) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hooks/mcp",
            post(move |headers: HeaderMap, body: String| {
                let tx = tx.clone();
                async move {
                    let body = serde_json::from_str(&body).expect("a JSON reply");
                    tx.send(Reply { headers, body }).expect("test listening");
                    r#"{"status":"success"}"#
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/mcp", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("webhook serves");
        });
        Self { url, replies, task }
    }

    /// The next reply, within 10 s.
    async fn next(&mut self) -> Reply {
        tokio::time::timeout(Duration::from_secs(10), self.replies.recv())
            .await
            .expect("a reply within 10 s")
            .expect("webhook running")
    }

    /// The final reply to request `id`, skipping notifications.
    async fn response(&mut self, id: i64) -> Reply {
        loop {
            let reply = self.next().await;
            if reply.body.get("method").is_none() {
                assert_eq!(reply.body["id"], id, "{:?}", reply.body);
                return reply;
            }
        }
    }
}

/// A server with the demo tools behind a webhook inbox served on
/// 127.0.0.1, replying through a webhook outbox.
struct Server {
    url: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn loopback_policy() -> WebhookPolicy {
    WebhookPolicy::prefixes(["http://127.0.0.1:"])
        .allow_http(true)
        .allow_loopback(true)
}

impl Server {
    async fn start(
        inbox: WebhookInboxBuilder,
        policy: WebhookPolicy,
        max_in_flight: usize,
    ) -> Self {
        let inbox: WebhookInbox = inbox.build();
        let outbox = WebhookOutbox::builder(policy)
            .max_attempts(2)
            .backoff(Duration::from_millis(20), Duration::from_millis(50))
            .build()
            .expect("an outbox");
        let outbox: Arc<dyn Outbox> = Arc::new(outbox);
        let shutdown = CancellationToken::new();
        let server = QueueServer::builder(inbox.clone(), inbox.tap(outbox))
            .wait(Duration::from_millis(200))
            .max_in_flight(max_in_flight)
            .allow_reply_prefix("http://127.0.0.1:")
            .build(DemoServer::factory(Arc::new(DemoStats::default())))
            .spawn(shutdown.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let router = inbox.router();
        let http = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("inbox serves");
        });
        Self {
            url: format!("http://{addr}/mcp/request"),
            shutdown,
            tasks: vec![server, http],
        }
    }
}

/// Posts like Python's client: JSON body, `X-Client-ID`, and the session,
/// request id and method headers when there are any.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, HeaderMap, Value) {
    let mut request = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Client-ID", "raw-client");
    if let Some(session) = session {
        request = request.header("X-Session-ID", session);
    }
    if let Some(method) = body["method"].as_str() {
        request = request.header("X-Method", method);
    }
    if let Some(id) = body.get("id") {
        request = request.header("X-Request-ID", id.to_string());
    }
    let response = request.body(body.to_string()).send().await.expect("POST");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer: {text}"));
    (status, headers, body)
}

fn initialize(webhook: &str) -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"raw","version":"1"},
        "_meta":{"webhookUrl": webhook}}})
}

/// Runs the handshake; returns the session id.
async fn handshake(http: &reqwest::Client, server: &Server, webhook: &mut Webhook) -> String {
    let (status, headers, body) =
        post_json(http, &server.url, None, &initialize(&webhook.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "session_created", "{body}");
    let session = body["session_id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    assert_eq!(headers["x-session-id"], session.as_str());
    let reply = webhook.response(0).await;
    assert_eq!(reply.headers["x-session-id"], session.as_str());
    assert!(
        reply.body["result"]["protocolVersion"].is_string(),
        "{:?}",
        reply.body
    );
    let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let (status, _, body) = post_json(http, &server.url, Some(&session), &initialized).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("initialized"))
    );
    session
}

fn call(id: i64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":arguments}})
}

#[tokio::test]
async fn handshake_list_call_and_end_of_session() {
    let mut webhook = Webhook::start().await;
    let server = Server::start(WebhookInbox::builder(), loopback_policy(), 8).await;
    let http = reqwest::Client::new();
    let session = handshake(&http, &server, &mut webhook).await;

    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    let (status, _, body) = post_json(&http, &server.url, Some(&session), &list).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("received")));
    let tools = webhook.response(1).await;
    let names: Vec<&str> = tools.body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");

    let echo = call(2, "echo", json!({"text": "over http"}));
    let (status, _, body) = post_json(&http, &server.url, Some(&session), &echo).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("received")));
    let result = webhook.response(2).await;
    assert_eq!(result.body["result"]["content"][0]["text"], "over http");
    assert_eq!(result.headers["x-session-id"], session.as_str());
    assert_eq!(result.headers["x-request-id"], "2");

    // A session id the server did not seal is refused (answered with an
    // error nowhere: it names no address of its own).
    let forged = format!("{session}x");
    let (status, _, _) = post_json(
        &http,
        &server.url,
        Some(&forged),
        &call(3, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(status, 200, "accepted over HTTP; refused by the dispatch");

    let ended = http
        .delete(&server.url)
        .header("X-Session-ID", &session)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(ended.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&ended.text().await.expect("body")).expect("JSON");
    assert_eq!(body["status"], "terminated");
    let (status, _, body) = post_json(
        &http,
        &server.url,
        Some(&session),
        &call(4, "echo", json!({"text": "late"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    // Neither the forged nor the late call reached the webhook.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(webhook.replies.try_recv().is_err(), "no reply to 3 or 4");
}

#[tokio::test]
async fn bad_input_is_answered_400_and_oversize_413() {
    let webhook = Webhook::start().await;
    let server = Server::start(WebhookInbox::builder().max_body(4096), loopback_policy(), 8).await;
    let http = reqwest::Client::new();
    let post_raw = |body: String, client: Option<&'static str>| {
        let mut request = http.post(&server.url).body(body);
        if let Some(client) = client {
            request = request.header("X-Client-ID", client);
        }
        async move {
            let response = request.send().await.expect("POST");
            let status = response.status().as_u16();
            let body: Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
            (status, body)
        }
    };

    let (status, body) = post_raw("{not json".to_owned(), Some("c")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{body}"
    );
    let (status, body) = post_raw(json!({"hello": "world"}).to_string(), Some("c")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );
    assert_eq!(body["jsonrpc"], "2.0");
    let echo = call(1, "echo", json!({"text": "x"})).to_string();
    let (status, body) = post_raw(echo, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["id"], 1, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("X-Client-ID")),
        "{body}"
    );
    let mut no_webhook = initialize(&webhook.url);
    no_webhook["params"]["_meta"] = json!({});
    let (status, body) = post_raw(no_webhook.to_string(), Some("c")).await;
    assert_eq!(status, 400, "{body}");
    let big = call(2, "echo", json!({"text": "x".repeat(8192)})).to_string();
    let (status, body) = post_raw(big, Some("c")).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].is_object(), "{body}");
    let missing = http.delete(&server.url).send().await.expect("DELETE");
    assert_eq!(missing.status().as_u16(), 400);
}

#[tokio::test]
async fn a_flood_beyond_the_bound_is_refused_503_and_every_accepted_call_answered() {
    let mut webhook = Webhook::start().await;
    let inbox = WebhookInbox::builder()
        .capacity(3)
        .retry_after(Duration::from_secs(2));
    let server = Server::start(inbox, loopback_policy(), 1).await;
    let http = reqwest::Client::new();
    let session = handshake(&http, &server, &mut webhook).await;

    let mut posts = tokio::task::JoinSet::new();
    for id in 100..120 {
        let (http, url, session) = (http.clone(), server.url.clone(), session.clone());
        posts.spawn(async move {
            let sleep = call(id, "sleep", json!({"ms": 500}));
            let (status, headers, body) = post_json(&http, &url, Some(&session), &sleep).await;
            (id, status, headers, body)
        });
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    while let Some(outcome) = posts.join_next().await {
        let (id, status, headers, body) = outcome.expect("POST task");
        match status {
            200 => accepted.push(id),
            503 => {
                refused += 1;
                assert_eq!(headers["retry-after"], "2");
                assert_eq!(body["id"], id, "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "20 calls at once beyond a bound of 3: some refused"
    );
    assert!(!accepted.is_empty(), "some accepted");
    let mut answered = Vec::new();
    while answered.len() < accepted.len() {
        let reply = webhook.next().await;
        if reply.body.get("method").is_some() {
            continue; // progress of a sleep
        }
        assert!(reply.body["result"].is_object(), "{:?}", reply.body);
        answered.push(reply.body["id"].as_i64().expect("an id"));
    }
    answered.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(answered, accepted);
}

#[tokio::test]
async fn a_loopback_webhook_is_not_called_unless_allowed() {
    // A listener counting connections, at the address the client names.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks/mcp", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counting = tokio::spawn({
        let connections = connections.clone();
        async move {
            while listener.accept().await.is_ok() {
                connections.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    // The server's reply allow-list takes it; the webhook outbox's address
    // check (loopback not allowed) does not.
    let strict = WebhookPolicy::prefixes(["http://127.0.0.1:"]).allow_http(true);
    let inbox = WebhookInbox::builder().init_wait(Duration::from_secs(1));
    let server = Server::start(inbox, strict, 8).await;
    let http = reqwest::Client::new();
    let (status, headers, body) = post_json(&http, &server.url, None, &initialize(&url)).await;
    // No reply was sent, so no session id to give.
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("accepted")),
        "{body}"
    );
    assert!(headers.get("x-session-id").is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing connected to 127.0.0.1"
    );
    counting.abort();
}

/// Python asyncmcp 0.2.1's webhook client (`mcp.ClientSession` over
/// `asyncmcp.webhook.webhook_client`) calls our server: the handshake, tools,
/// echo, an error and progress.
#[tokio::test]
async fn python_webhook_client_calls_our_server() {
    let server = Server::start(WebhookInbox::builder(), loopback_policy(), 8).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_webhook_client.py");
    let run = tokio::process::Command::new(asyncmcp_testkit::py_peer::py_peer_python())
        .arg(&script)
        .args(["--server-url", &server.url, "--timeout", "60"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("py_webhook_client.py ran over 90 s")
        .expect("spawning py_webhook_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "py_webhook_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
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
    assert_eq!(find("echo"), json!("hello over webhooks"));
    // A JSON-RPC error, as our server answers an unknown tool.
    let error = find("error");
    assert!(error["code"].as_i64().is_some_and(|c| c < 0), "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("not found")),
        "{error}"
    );
    assert!(
        find("progress").as_u64().is_some_and(|n| n > 0),
        "{lines:?}"
    );
    assert!(find("sleep").is_string());
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// With a verifier, only requests signed with the secret are taken: unsigned,
/// tampered and replayed ones are refused `401` and never run.
#[tokio::test]
async fn a_signing_inbox_refuses_unsigned_tampered_and_replayed_requests() {
    let mut webhook = Webhook::start().await;
    let verifier = WebhookVerifier::new(SECRET).expect("a secret");
    let server = Server::start(
        WebhookInbox::builder().verifier(verifier),
        loopback_policy(),
        8,
    )
    .await;
    let signer = WebhookSigner::new(SECRET).expect("a secret");
    let http = reqwest::Client::new();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64
    };
    let send = |body: String, signed_body: Option<String>, id: &'static str| {
        let mut request = http
            .post(&server.url)
            .header("X-Client-ID", "signed-client")
            .body(body);
        if let Some(signed) = signed_body {
            for (name, value) in signer.headers(id, now(), &signed).expect("signed") {
                request = request.header(name, value);
            }
        }
        async move {
            let response = request.send().await.expect("POST");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    };
    let mut echo = call(1, "echo", json!({"text": "signed"}));
    echo["params"]["_meta"] = json!({"webhookUrl": webhook.url});
    let body = echo.to_string();

    let (status, text) = send(body.clone(), None, "").await;
    assert_eq!(status, 401, "unsigned: {text}");
    let tampered = body.replace("signed", "forged");
    let (status, text) = send(tampered, Some(body.clone()), "msg_1").await;
    assert_eq!(status, 401, "tampered: {text}");
    let (status, text) = send(body.clone(), Some(body.clone()), "msg_2").await;
    assert_eq!(status, 200, "signed: {text}");
    let (status, text) = send(body.clone(), Some(body.clone()), "msg_2").await;
    assert_eq!(status, 401, "replayed: {text}");

    let reply = webhook.response(1).await;
    assert_eq!(reply.body["result"]["content"][0]["text"], "signed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(webhook.replies.try_recv().is_err(), "one call ran, once");
}

/// A server taking requests from a queue answers a caller that names a
/// webhook in `initialize` (`params._meta.webhookUrl`) there, and its later
/// requests too: the sealed session carries the URL.
#[tokio::test]
async fn a_queue_fed_server_answers_at_the_webhook_its_session_names() {
    let mut webhook = Webhook::start().await;
    let broker = MemoryBroker::new();
    let requests = broker.create_queue("requests", MemoryQueueOptions::default());
    let outbox = WebhookOutbox::builder(loopback_policy())
        .build()
        .expect("an outbox");
    let routing = RoutingOutbox::new()
        .with(Arc::new(broker.outbox()))
        .with(Arc::new(outbox));
    let shutdown = CancellationToken::new();
    let _server = QueueServer::builder(broker.inbox(&requests).expect("inbox"), routing)
        .wait(Duration::from_millis(200))
        .allow_reply_prefix("http://127.0.0.1:")
        .build(DemoServer::factory(Arc::new(DemoStats::default())))
        .spawn(shutdown.clone());
    let _stop = shutdown.drop_guard();
    let send = |body: Value, session: Option<&str>| {
        let mut message = QueueMessage::new(body.to_string()).with_string("ClientId", "queued");
        if let Some(session) = session {
            message = message.with_string("SessionId", session);
        }
        let (outbox, requests) = (broker.outbox(), requests.clone());
        async move { outbox.send(&requests, message).await.expect("sent") }
    };
    send(initialize(&webhook.url), None).await;
    let initialized = webhook.response(0).await;
    let session = initialized.headers["x-session-id"]
        .to_str()
        .expect("text")
        .to_owned();
    send(
        call(1, "echo", json!({"text": "from a queue"})),
        Some(&session),
    )
    .await;
    let reply = webhook.response(1).await;
    assert_eq!(reply.body["result"]["content"][0]["text"], "from a queue");
    assert_eq!(reply.headers["x-session-id"], session.as_str());
}

/// Our webhook client against our webhook server: an rmcp client over
/// `WebhookClientTransport` lists the demo tools, calls them (a result and
/// an error result), and its replies arrive on its own receiver.
#[tokio::test]
async fn our_webhook_client_calls_our_webhook_server() {
    use asyncmcp::WebhookClientTransport;
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;

    let server = Server::start(WebhookInbox::builder(), loopback_policy(), 8).await;
    let transport = WebhookClientTransport::builder(server.url.clone())
        .client_id("rust-webhook-client")
        .start()
        .await
        .expect("the receiver starts");
    let receiver = transport.webhook_url().to_owned();
    assert!(receiver.starts_with("http://127.0.0.1:"), "{receiver}");
    let handle = transport.handle();
    let client = ().serve(transport).await.expect("initialized over webhooks");
    assert!(handle.session_id().is_some(), "a session id was issued");

    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<_> = tools.iter().map(|tool| tool.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "fail", "hash", "roots", "sleep"]);

    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(
                json!({"text": "both ends ours"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("echo");
    let echoed = serde_json::to_value(&echo).expect("JSON");
    assert_eq!(echoed["content"][0]["text"], "both ends ours", "{echoed}");

    let failed = client
        .call_tool(
            CallToolRequestParams::new("fail").with_arguments(
                json!({"message": "as asked"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("an error result is still a result");
    assert_eq!(failed.is_error, Some(true));

    client.cancel().await.expect("closed");
    // The receiver is gone once the client is closed.
    let refused = reqwest::Client::new()
        .post(&receiver)
        .body("{}")
        .send()
        .await;
    assert!(refused.is_err(), "the receiver still answers: {refused:?}");
}

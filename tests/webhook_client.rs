//! The webhook client transport, on loopback only: against Python asyncmcp
//! 0.2.1's webhook server (`tests/interop/py_webhook_server.py`, from the
//! peer in `ASYNCMCP_PY_PEER`), and its receiver against POSTs made here
//! (garbage, oversize bodies, signatures, ordering).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asyncmcp::client::WebhookClientTransport;
use asyncmcp::queue::webhook::{WebhookSigner, WebhookVerifier};
use asyncmcp_testkit::py_peer::py_peer_python;
use asyncmcp_testkit::support::{call, text_of};
use rmcp::ServiceExt;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A server URL nothing listens on: the receiver tests never send.
const NOWHERE: &str = "http://127.0.0.1:9/mcp/request";

/// A running `py_webhook_server.py`; killed when dropped.
struct PyWebhookServer {
    child: tokio::process::Child,
    url: String,
}

/// Starts the Python asyncmcp webhook server; returns once it prints
/// `READY <url>` (panics after 30 s).
async fn spawn_py_webhook_server() -> PyWebhookServer {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_webhook_server.py");
    let mut child = tokio::process::Command::new(py_peer_python())
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", script.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.trim().strip_prefix("READY ") {
                return Ok(Some(url.to_owned()));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await;
    let url = match ready {
        Ok(Ok(Some(url))) => url,
        Ok(Ok(None)) => panic!("py_webhook_server.py exited before READY (see its stderr)"),
        Ok(Err(e)) => panic!("reading py_webhook_server.py stdout: {e}"),
        Err(_) => panic!("py_webhook_server.py did not print READY within 30 s"),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    PyWebhookServer { child, url }
}

/// POSTs `body` to `url` with `headers`; returns the status and the answer.
async fn post(url: &str, headers: &[(&str, String)], body: impl Into<String>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).body(body.into());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("POST on loopback");
    let status = response.status().as_u16();
    let text = response.text().await.expect("an answer");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

/// Receives the next message, failing after 10 s.
async fn next(transport: &mut WebhookClientTransport) -> ServerJsonRpcMessage {
    tokio::time::timeout(Duration::from_secs(10), transport.receive())
        .await
        .expect("a message within 10 s")
        .expect("the transport is open")
}

/// The `id` of a response, as JSON.
fn id_of(message: &ServerJsonRpcMessage) -> Value {
    serde_json::to_value(message).expect("serializable")["id"].clone()
}

/// Our client against Python asyncmcp's webhook server: initialize, list
/// tools, call tools, a tool error and a protocol error; then close(),
/// which ends the session there (DELETE) and removes the receiver.
#[tokio::test]
async fn our_client_calls_python_webhook_server() {
    let mut python = spawn_py_webhook_server().await;
    let transport = WebhookClientTransport::builder(&python.url)
        .start()
        .await
        .expect("receiver bound");
    let receiver = transport.local_addr();
    assert_eq!(receiver.ip().to_string(), "127.0.0.1");
    assert_ne!(receiver.port(), 0, "a port was chosen");
    let handle = transport.handle();
    let session = ().serve(transport).await.expect("initialize with Python");
    // notifications/initialized, which Python refuses without X-Session-ID,
    // went through: the session id came from the session_created answer.
    let session_id = handle.session_id().expect("a session id");

    let tools = session.list_all_tools().await.expect("list tools");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo"]);
    let echoed = session
        .call_tool(call("echo", json!({"text": "hello over webhooks"})))
        .await
        .expect("echo");
    assert_eq!(text_of(&echoed), "hello over webhooks");
    let sum = session
        .call_tool(call("add", json!({"a": 2, "b": 3})))
        .await
        .expect("add");
    assert_eq!(text_of(&sum), "5");
    let failed = session
        .call_tool(call("nope", json!({})))
        .await
        .expect("a tool error is a result");
    assert_eq!(failed.is_error, Some(true));
    assert!(
        text_of(&failed).contains("unknown tool: nope"),
        "{failed:?}"
    );
    let error = session
        .list_all_resources()
        .await
        .expect_err("Python's server has no resources");
    assert!(error.to_string().contains("Method not found"), "{error}");

    // The session is live at the server: a notification in it is received.
    let probe = json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"});
    let ids = [
        ("X-Client-ID", handle.client_id().to_owned()),
        ("X-Session-ID", session_id.clone()),
    ];
    let (status, answer) = post(&python.url, &ids, probe.to_string()).await;
    assert_eq!((status, &answer["status"]), (200, &json!("received")));

    session.cancel().await.expect("close");
    let refused = tokio::net::TcpStream::connect(receiver).await;
    assert!(
        refused.is_err(),
        "the receiver still accepts connections after close"
    );
    // After the DELETE the server knows the session no more.
    let (status, answer) = post(&python.url, &ids, probe.to_string()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "No active session found");
    let _ = python.child.kill().await;
}

/// Garbage and oversize bodies are refused (400, 413), as are other methods
/// and paths, and the receiver keeps taking good deliveries.
#[tokio::test]
async fn the_receiver_refuses_garbage_and_oversize_bodies() {
    let mut transport = WebhookClientTransport::builder(NOWHERE)
        .max_body(2048)
        .start()
        .await
        .expect("receiver bound");
    let url = transport.webhook_url().to_owned();
    assert!(url.starts_with(&format!("http://{}/mcp/webhook/", transport.local_addr())));

    let (status, answer) = post(&url, &[], "not json at all").await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], -32700);
    let (status, _) = post(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","neither":"request nor reply"}"#,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &url,
        &[],
        vec![b'x'; 10_000]
            .iter()
            .map(|&b| b as char)
            .collect::<String>(),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = post(
        &format!("http://{}/elsewhere", transport.local_addr()),
        &[],
        "{}",
    )
    .await;
    assert_eq!(status, 404);
    let got = reqwest::get(&url).await.expect("GET on loopback");
    assert_eq!(got.status().as_u16(), 405);

    let reply = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
    let (status, _) = post(&url, &[], reply.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(id_of(&next(&mut transport).await), json!(1));
    transport.close().await.expect("closed");
}

/// A response numbered after a notification it overtook (X-Sequence) is
/// handed over after it.
#[tokio::test]
async fn deliveries_are_put_back_in_order_by_sequence() {
    let mut transport = WebhookClientTransport::builder(NOWHERE)
        .start()
        .await
        .expect("receiver bound");
    let url = transport.webhook_url().to_owned();
    let numbered = |sequence: u64| {
        [
            ("X-Request-ID", "7".to_owned()),
            ("X-Sequence", sequence.to_string()),
        ]
    };
    let response = json!({"jsonrpc": "2.0", "id": 7, "result": {}});
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": "t", "progress": 1}});
    assert_eq!(post(&url, &numbered(2), response.to_string()).await.0, 200);
    assert_eq!(post(&url, &numbered(1), progress.to_string()).await.0, 200);
    assert!(matches!(
        next(&mut transport).await,
        ServerJsonRpcMessage::Notification(_)
    ));
    assert_eq!(id_of(&next(&mut transport).await), json!(7));
    transport.close().await.expect("closed");
}

/// With a secret configured, unsigned, tampered and stale deliveries are
/// refused, a signed one taken, and its replay dropped.
#[tokio::test]
async fn with_a_secret_only_signed_deliveries_are_taken() {
    let mut transport = WebhookClientTransport::builder(NOWHERE)
        .verifier(WebhookVerifier::new(SECRET).expect("a secret"))
        .start()
        .await
        .expect("receiver bound");
    let url = transport.webhook_url().to_owned();
    let signer = WebhookSigner::new(SECRET).expect("a secret");
    let signed = |id: &str, timestamp: i64, body: &str| -> Vec<(&'static str, String)> {
        signer
            .headers(id, timestamp, body)
            .expect("signed")
            .into_iter()
            .collect()
    };
    let reply = |id: u64| json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string();

    let (status, _) = post(&url, &[], reply(1)).await;
    assert_eq!(status, 401, "unsigned");
    let headers = signed("msg_1", unix_now(), &reply(1));
    let (status, _) = post(&url, &headers, reply(666)).await;
    assert_eq!(status, 401, "tampered");
    let stale = signed("msg_0", unix_now() - 3600, &reply(1));
    let (status, _) = post(&url, &stale, reply(1)).await;
    assert_eq!(status, 401, "stale");
    let other = WebhookSigner::new("whsec_c2VjcmV0LXR3bw==").expect("a secret");
    let foreign: Vec<_> = other
        .headers("msg_9", unix_now(), &reply(1))
        .expect("signed")
        .into();
    let (status, _) = post(&url, &foreign, reply(1)).await;
    assert_eq!(status, 401, "another secret");

    let (status, _) = post(&url, &headers, reply(1)).await;
    assert_eq!(status, 200, "signed");
    let (status, answer) = post(&url, &headers, reply(1)).await;
    assert_eq!((status, &answer["status"]), (200, &json!("duplicate")));
    let (status, _) = post(&url, &signed("msg_2", unix_now(), &reply(2)), reply(2)).await;
    assert_eq!(status, 200);
    assert_eq!(id_of(&next(&mut transport).await), json!(1));
    assert_eq!(
        id_of(&next(&mut transport).await),
        json!(2),
        "the replay was not handed over"
    );
    transport.close().await.expect("closed");
}

/// The session comes from the initialize result's X-Session-ID when it
/// arrives first; afterwards a delivery naming another session is refused.
#[tokio::test]
async fn deliveries_for_another_session_are_refused() {
    let mut transport = WebhookClientTransport::builder(NOWHERE)
        .start()
        .await
        .expect("receiver bound");
    let url = transport.webhook_url().to_owned();
    let handle = transport.handle();
    let initialized = json!({"jsonrpc": "2.0", "id": 0, "result": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "serverInfo": {"name": "test", "version": "1"}}});
    let session = |id: &str| [("X-Session-ID", id.to_owned())];
    let (status, _) = post(&url, &session("s-1"), initialized.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(id_of(&next(&mut transport).await), json!(0));
    assert_eq!(handle.session_id().as_deref(), Some("s-1"));

    let reply = |id: u64| json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string();
    let (status, _) = post(&url, &session("s-2"), reply(1)).await;
    assert_eq!(status, 409);
    let (status, _) = post(&url, &session("s-1"), reply(2)).await;
    assert_eq!(status, 200);
    assert_eq!(id_of(&next(&mut transport).await), json!(2));
    transport.close().await.expect("closed");
}

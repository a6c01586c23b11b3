//! `asyncmcp proxy --listen --webhook-tools`, the built binary: Python
//! asyncmcp 0.2.1's StreamableHTTP+webhook client
//! (`clients/py_hybrid_proxy_client.py`) → the proxy → SQS (LocalStack) →
//! `asyncmcp serve` → server-everything. An ordinary tool is answered on the
//! stream, a webhook tool `202` and then at the client's webhook. In raw
//! HTTP: with `ASYNCMCP_WEBHOOK_SECRET` the delivery is signed, and a
//! webhook outside `--reply-webhook` is refused at `initialize`.
//!
//! Needs LocalStack, server-everything and `ASYNCMCP_PY_PEER`:
//! `scripts/test.sh` starts and installs them.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use asyncmcp::queue::webhook::WebhookVerifier;
use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::py_peer::py_peer_python;
use common::serve::{Serve, server_everything};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The deployment's Standard Webhooks secret (24 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long the proxy may take to listen, or the client to finish.
const LIMIT: Duration = Duration::from_secs(90);

/// The built `asyncmcp` with LocalStack's settings and none of the
/// developer's `ASYNCMCP_*` ones.
fn asyncmcp(ls: &LocalStack, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    for name in [
        "ASYNCMCP_LOG",
        "ASYNCMCP_PROXY_LISTEN",
        "ASYNCMCP_PROXY_TOKEN",
        "ASYNCMCP_QUEUE_URL",
        "ASYNCMCP_TOPIC_ARN",
        "ASYNCMCP_REPLY_QUEUE_URL",
        "ASYNCMCP_CLIENT_ID",
        "ASYNCMCP_TIMEOUT",
        "ASYNCMCP_SIGNING_KEY",
        "ASYNCMCP_WEBHOOK_SECRET",
        "ASYNCMCP_WEBHOOK_SECRET_PREVIOUS",
    ] {
        command.env_remove(name);
    }
    command
        .args(args)
        .env_remove("AWS_PROFILE")
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts the proxy with `args`; returns it (killed on drop) and its URL
/// once it listens.
async fn proxy(ls: &LocalStack, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut process = asyncmcp(ls, args)
        .envs(env.iter().copied())
        .spawn()
        .expect("start asyncmcp proxy");
    let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
    let url = tokio::time::timeout(LIMIT, async {
        let mut seen = String::new();
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(url) = line.strip_prefix("asyncmcp proxy: listening on ") {
                return url.to_owned();
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        panic!("the proxy exited before listening:\n{seen}");
    })
    .await
    .expect("the proxy listens in time");
    // Drained, so the proxy never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (process, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hybrid_client_gets_a_webhook_tool_answered_at_its_webhook() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("proxy-hybrid-requests").await;
    let _serve = Serve::start(ls, &queue, &server_everything()).await;
    let (_proxy, url) = proxy(
        ls,
        &[
            "proxy",
            "--queue-url",
            &queue,
            "--listen",
            "127.0.0.1:0",
            "--webhook-tools",
            "get-sum",
            "--reply-webhook",
            "http://127.0.0.1:",
            "--allow-loopback-webhooks",
        ],
        &[],
    )
    .await;

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/py_hybrid_proxy_client.py");
    let run = tokio::time::timeout(
        LIMIT,
        Command::new(py_peer_python())
            .arg(&script)
            .args(["--server-url", &url, "--timeout", "60"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("py_hybrid_proxy_client.py finished in time")
    .expect("py_hybrid_proxy_client.py ran");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "py_hybrid_proxy_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let line = |key: &str| {
        lines
            .iter()
            .find_map(|line| line.get(key).cloned())
            .unwrap_or_else(|| panic!("no {key} line in:\n{stdout}"))
    };

    let tools = line("tools");
    for tool in ["echo", "get-sum"] {
        assert!(
            tools.as_array().expect("a list").contains(&json!(tool)),
            "{tool} in {tools}"
        );
    }
    assert_eq!(line("echo"), json!("Echo: over the proxy"));
    assert_eq!(line("sum"), json!("The sum of 2 and 3 is 5."));
    // echo on the POST's stream, get-sum acknowledged and answered at the
    // webhook: its result, and only it, arrived there.
    assert_eq!(line("statuses"), json!({"echo": 200, "get-sum": 202}));
    let webhook = line("webhook");
    let delivered = webhook.as_array().expect("a list");
    assert_eq!(delivered.len(), 1, "{webhook}");
    assert_eq!(
        delivered[0]["text"], "The sum of 2 and 3 is 5.",
        "{webhook}"
    );
}

/// POSTs `body` to the proxy at `url` (in `session`, when given); the
/// status, the session header and the body.
async fn post(url: &str, session: Option<&str>, body: Value) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.expect("POST to the proxy");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, session, response.text().await.expect("a body"))
}

/// An `initialize` naming `webhook`.
fn initialize(webhook: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "proxy-hybrid-test", "version": "1"},
        "_meta": {"webhookUrl": webhook}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_and_a_webhook_outside_the_prefixes_is_refused() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("proxy-hybrid-signed").await;
    let _serve = Serve::start(ls, &queue, &server_everything()).await;

    // The caller's webhook: passes on each body whose signature verifies.
    let verifier = std::sync::Arc::new(WebhookVerifier::new(SECRET).expect("a verifier"));
    let (tx, mut deliveries) = mpsc::unbounded_channel::<Result<Value, String>>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (verifier, tx) = (verifier.clone(), tx.clone());
            async move {
                let checked = verifier
                    .verify(&headers, body.as_bytes())
                    .map_err(|error| format!("{error}: {body}"))
                    .and_then(|_| serde_json::from_str(&body).map_err(|e| e.to_string()));
                let _ = tx.send(checked);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let webhook = format!(
        "http://{}/hook",
        listener.local_addr().expect("its address")
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let (_proxy, url) = proxy(
        ls,
        &[
            "proxy",
            "--queue-url",
            &queue,
            "--listen",
            "127.0.0.1:0",
            "--webhook-tools",
            "get-sum,get-env",
            "--reply-webhook",
            "http://127.0.0.1:",
            "--allow-loopback-webhooks",
        ],
        &[("ASYNCMCP_WEBHOOK_SECRET", SECRET)],
    )
    .await;

    let (status, session, body) = post(&url, None, initialize("http://192.0.2.1:9/hook")).await;
    assert_eq!(status, 400, "{body}");
    assert!(session.is_none(), "no session for a refused webhook");
    assert!(body.contains("-32602"), "{body}");

    let (status, session, body) = post(&url, None, initialize(&webhook)).await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("a session");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = post(&url, Some(&session), initialized).await;
    assert_eq!(status, 202, "{body}");
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "get-sum", "arguments": {"a": 20, "b": 22}}});
    let (status, _, body) = post(&url, Some(&session), call).await;
    assert_eq!(status, 202, "{body}");

    let delivered = tokio::time::timeout(LIMIT, deliveries.recv())
        .await
        .expect("a delivery in time")
        .expect("the receiver runs")
        .unwrap_or_else(|error| panic!("a delivery failed verification: {error}"));
    assert_eq!(delivered["id"], 7, "{delivered}");
    assert_eq!(
        delivered["result"]["content"][0]["text"], "The sum of 20 and 22 is 42.",
        "{delivered}"
    );
}

#[tokio::test]
async fn webhook_tools_need_listen_and_a_reply_webhook() {
    for args in [
        &[
            "proxy",
            "--queue-url",
            "https://sqs.us-east-1.amazonaws.com/1/q",
            "--listen",
            "127.0.0.1:0",
            "--webhook-tools",
            "get-sum",
        ][..],
        &[
            "proxy",
            "--queue-url",
            "https://sqs.us-east-1.amazonaws.com/1/q",
            "--webhook-tools",
            "get-sum",
            "--reply-webhook",
            "https://hooks.example.com/",
        ][..],
        &[
            "proxy",
            "--queue-url",
            "https://sqs.us-east-1.amazonaws.com/1/q",
            "--listen",
            "127.0.0.1:0",
            "--reply-webhook",
            "https://hooks.example.com/",
        ][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_asyncmcp"))
            .args(args)
            .env_remove("ASYNCMCP_PROXY_LISTEN")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run asyncmcp proxy");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("required"), "{args:?}: {stderr}");
    }
}

//! `asyncmcp proxy --webhook-server`, the built binary, on loopback: a
//! stdio MCP client reaching a webhook MCP server through the proxy.
//!
//! * MCP Inspector's CLI → proxy (stdio, and `--listen` HTTP) → `asyncmcp
//!   serve --webhook-listen` → server-everything, with
//!   `ASYNCMCP_WEBHOOK_SECRET` on both sides;
//! * MCP Inspector's CLI → proxy → Python asyncmcp 0.2.1's webhook server
//!   (`tests/interop/py_webhook_server.py`), which signs nothing;
//! * the proxy against a webhook server played by the test: its requests
//!   are signed (the closing DELETE too), its receiver (bound with
//!   `--webhook-listen`, announced with `--public-url`) refuses unsigned,
//!   foreign-signed and tampered replies.
//!
//! Needs LocalStack (the shared helper runs `serve` with its AWS settings),
//! server-everything, Inspector (`ASYNCMCP_NODE`, `ASYNCMCP_INSPECTOR`) and
//! `ASYNCMCP_PY_PEER`: `scripts/test.sh` starts and installs them.

mod common;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asyncmcp::queue::webhook::{WebhookSigner, WebhookVerifier};
use asyncmcp_testkit::aws;
use asyncmcp_testkit::eventually;
use asyncmcp_testkit::py_peer::py_peer_python;
use asyncmcp_testkit::real_clients::{inspector, node};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use common::serve::{Serve, server_everything};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// The deployment's Standard Webhooks secret (24 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another secret, of someone else.
const OTHER_SECRET: &str = "whsec_b3RoZXItc2VjcmV0LW9mLTI0LWJ5dGVzISE=";
/// How long one run of Inspector, or a wait for the proxy, may take.
const LIMIT: Duration = Duration::from_secs(90);

/// Numbers Inspector's catalog files, one per run.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// Inspector's CLI running `asyncmcp proxy --webhook-server URL` over
/// stdio, with `env` passed on (`-e`: Inspector hands its server only a
/// few variables), calling `method`; the JSON it printed.
async fn inspect(url: &str, env: &[(&str, &str)], method: &[&str]) -> Value {
    let mut target = vec![
        env!("CARGO_BIN_EXE_asyncmcp").to_owned(),
        "proxy".to_owned(),
        "--webhook-server".to_owned(),
        url.to_owned(),
    ];
    for (name, value) in env {
        target.extend(["-e".to_owned(), format!("{name}={value}")]);
    }
    inspect_target(&target, method).await
}

/// Inspector's CLI on `target` (a command and its arguments, or a URL and
/// its options), calling `method`; the JSON it printed.
async fn inspect_target(target: &[String], method: &[&str]) -> Value {
    let mut command = Command::new(node());
    command
        .arg(inspector())
        .arg("--cli")
        .args(target)
        .args(method)
        .env(
            "MCP_CATALOG_PATH",
            std::env::temp_dir().join(format!(
                "asyncmcp-proxy-webhook-test-{}-{}.json",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            )),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output: Output = tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("Inspector finished in time")
        .expect("Inspector ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{stdout}\n{stderr}"))
}

/// The built `asyncmcp`, without the developer's settings the proxy reads
/// from the environment (which could turn the stdio proxy into an HTTP one,
/// or conflict with `--webhook-server`).
fn proxy_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    for name in [
        "ASYNCMCP_LOG",
        "ASYNCMCP_PROXY_LISTEN",
        "ASYNCMCP_PROXY_TOKEN",
        "ASYNCMCP_REPLY_QUEUE_URL",
        "ASYNCMCP_CLIENT_ID",
        "ASYNCMCP_TIMEOUT",
        "ASYNCMCP_WEBHOOK_SECRET",
    ] {
        command.env_remove(name);
    }
    command
}

/// The `name`s of the objects in `listed[key]`.
fn names(listed: &Value, key: &str) -> Vec<String> {
    listed[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {listed}"))
        .iter()
        .filter_map(|item| item["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_reaches_serve_over_webhooks_through_the_proxy_signed() {
    let ls = aws::localstack().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let command = server_everything();
    let mut args = vec![
        "--webhook-listen",
        &listen,
        "--reply-webhook",
        "http://127.0.0.1:",
        "--allow-loopback-webhooks",
        "--",
    ];
    args.extend(command.iter().map(String::as_str));
    let mut serve = Serve::start_with(ls, &args, &[("ASYNCMCP_WEBHOOK_SECRET", SECRET)]).await;
    let url = format!("http://{listen}/mcp/request");
    let env = [("ASYNCMCP_WEBHOOK_SECRET", SECRET)];

    let tools = names(
        &inspect(&url, &env, &["--method", "tools/list"]).await,
        "tools",
    );
    for tool in ["echo", "get-sum"] {
        assert!(tools.iter().any(|name| name == tool), "{tool} in {tools:?}");
    }
    let sum = inspect(
        &url,
        &env,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            "a=2",
            "--tool-arg",
            "b=3",
        ],
    )
    .await;
    assert_eq!(
        sum["content"][0]["text"], "The sum of 2 and 3 is 5.",
        "{sum}"
    );

    // The same server behind the proxy's Streamable HTTP front.
    let mut proxy = proxy_command()
        .args(["proxy", "--webhook-server", &url, "--listen", "127.0.0.1:0"])
        .env("ASYNCMCP_WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn asyncmcp proxy --listen");
    let mut lines = BufReader::new(proxy.stderr.take().expect("stderr")).lines();
    let listening = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(url) = line.strip_prefix("asyncmcp proxy: listening on ") {
                return Some(url.to_owned());
            }
        }
        None
    })
    .await
    .expect("the proxy listens in time")
    .expect("the proxy says where it listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = [listening, "--transport".to_owned(), "http".to_owned()];
    let sum = inspect_target(
        &http,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            "a=20",
            "--tool-arg",
            "b=22",
        ],
    )
    .await;
    assert_eq!(
        sum["content"][0]["text"], "The sum of 20 and 22 is 42.",
        "{sum}"
    );
    serve.assert_running();
}

/// A running `py_webhook_server.py`; killed when dropped.
struct PyWebhookServer {
    _child: tokio::process::Child,
    url: String,
}

/// Starts Python asyncmcp 0.2.1's webhook server; returns once it prints
/// `READY <url>`.
async fn python_webhook_server() -> PyWebhookServer {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/py_webhook_server.py");
    let mut child = Command::new(py_peer_python())
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("spawning {}: {error}", script.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.trim().strip_prefix("READY ") {
                return Some(url.to_owned());
            }
        }
        None
    })
    .await;
    let url = match ready {
        Ok(Some(url)) => url,
        Ok(None) => panic!("py_webhook_server.py exited before READY (see its stderr)"),
        Err(_) => panic!("py_webhook_server.py did not print READY within {LIMIT:?}"),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    PyWebhookServer { _child: child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_reaches_the_python_webhook_server_through_the_proxy() {
    let server = python_webhook_server().await;
    let echo = inspect(
        &server.url,
        &[],
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "text=through the proxy",
        ],
    )
    .await;
    assert_eq!(echo["content"][0]["text"], "through the proxy", "{echo}");
}

/// One request the test's webhook server took.
#[derive(Debug)]
struct Taken {
    method: Method,
    headers: HeaderMap,
    body: String,
}

/// The session id the test's webhook server hands out.
const SESSION: &str = "session-of-the-test";

/// A webhook MCP server's front, played by the test: every request is
/// passed to the test; `initialize` creates [`SESSION`].
async fn fake_webhook_server() -> (String, mpsc::UnboundedReceiver<Taken>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/mcp/request",
        listener.local_addr().expect("addr")
    );
    let (sender, taken) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/mcp/request", axum::routing::post(take).delete(take))
        .with_state(Arc::new(Mutex::new(sender)));
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, taken)
}

async fn take(
    State(sender): State<Arc<Mutex<mpsc::UnboundedSender<Taken>>>>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let initialize = body.contains("\"method\":\"initialize\"");
    let _ = sender.lock().expect("not poisoned").send(Taken {
        method,
        headers,
        body,
    });
    if initialize {
        (
            StatusCode::OK,
            [("x-session-id", SESSION)],
            json!({"status": "session_created", "session_id": SESSION}).to_string(),
        )
            .into_response()
    } else {
        (StatusCode::OK, json!({"status": "received"}).to_string()).into_response()
    }
}

/// The next request the fake server took.
async fn next(taken: &mut mpsc::UnboundedReceiver<Taken>) -> Taken {
    tokio::time::timeout(LIMIT, taken.recv())
        .await
        .expect("a request from the proxy in time")
        .expect("the fake server runs")
}

fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

/// POSTs `body` to the proxy's receiver at `hook` with `headers`; the
/// status.
async fn deliver(hook: &str, headers: &[(&'static str, String)], body: &str) -> u16 {
    let mut request = reqwest::Client::new()
        .post(hook)
        .header("content-type", "application/json")
        .header("x-session-id", SESSION)
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request
        .send()
        .await
        .expect("POST on loopback")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_signs_its_requests_and_refuses_unsigned_replies() {
    let (url, mut taken) = fake_webhook_server().await;
    // The receiver on a port of the test's choosing, announced by its
    // "public" URL (here the same address: what a tunnel would forward).
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let mut proxy = proxy_command()
        .args(["proxy", "--webhook-server", &url])
        .args(["--webhook-listen", &listen, "--public-url", &public])
        .env("ASYNCMCP_WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn asyncmcp proxy");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(proxy.stderr.take().expect("stderr")).lines();
    let collected = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = collected.lock().expect("not poisoned");
            text.push_str(&line);
            text.push('\n');
        }
    });
    let said = |needle: &'static str| {
        let stderr = stderr.clone();
        move || stderr.lock().is_ok_and(|text| text.contains(needle))
    };

    // The proxy initializes with the server at once, signed.
    let verifier = WebhookVerifier::new(SECRET).expect("the secret");
    let initialize = next(&mut taken).await;
    assert_eq!(initialize.method, Method::POST);
    verifier
        .verify(&initialize.headers, initialize.body.as_bytes())
        .expect("the initialize POST is signed with the secret");
    let request: Value = serde_json::from_str(&initialize.body).expect("JSON-RPC");
    assert_eq!(request["method"], "initialize", "{request}");
    let hook = request["params"]["_meta"]["webhookUrl"]
        .as_str()
        .expect("a webhook URL")
        .to_owned();
    assert!(
        hook.starts_with(&format!("{public}/mcp/webhook/")) && hook.len() > public.len() + 30,
        "the public URL with the receiver's random path: {hook}"
    );
    let result = json!({
        "jsonrpc": "2.0", "id": request["id"],
        "result": {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake-webhook-server", "version": "1"}
        }
    })
    .to_string();

    assert_eq!(deliver(&hook, &[], &result).await, 401, "unsigned reply");
    let foreign = WebhookSigner::new(OTHER_SECRET).expect("a secret");
    let headers = foreign
        .headers("msg_foreign", unix_now(), &result)
        .expect("signed");
    assert_eq!(
        deliver(&hook, &headers, &result).await,
        401,
        "a reply signed with another secret"
    );
    let signer = WebhookSigner::new(SECRET).expect("the secret");
    let headers = signer
        .headers("msg_tampered", unix_now(), &result)
        .expect("signed");
    let tampered = result.replace("fake-webhook-server", "evil-webhook-server");
    assert_eq!(
        deliver(&hook, &headers, &tampered).await,
        401,
        "a tampered reply"
    );
    assert!(!said("ready")(), "not initialized by a refused reply");

    let headers = signer
        .headers("msg_genuine", unix_now(), &result)
        .expect("signed");
    assert_eq!(
        deliver(&hook, &headers, &result).await,
        200,
        "the genuine reply"
    );
    assert!(
        eventually(LIMIT, said("asyncmcp proxy: ready: stdio")).await,
        "the proxy is ready once initialized; stderr:\n{}",
        stderr.lock().expect("not poisoned")
    );
    let initialized = next(&mut taken).await;
    assert!(
        initialized.body.contains("notifications/initialized"),
        "{initialized:?}"
    );
    verifier
        .verify(&initialized.headers, initialized.body.as_bytes())
        .expect("signed too");

    // Stdin closed: the proxy ends the session at the server, signed.
    drop(proxy.stdin.take());
    let status = tokio::time::timeout(LIMIT, proxy.wait())
        .await
        .expect("the proxy exits once stdin closes")
        .expect("wait for the proxy");
    assert!(
        status.success(),
        "{status:?}; stderr:\n{}",
        stderr.lock().expect("not poisoned")
    );
    let delete = next(&mut taken).await;
    assert_eq!(delete.method, Method::DELETE, "{delete:?}");
    assert_eq!(
        delete
            .headers
            .get("x-session-id")
            .and_then(|v| v.to_str().ok()),
        Some(SESSION)
    );
    verifier
        .verify(&delete.headers, delete.body.as_bytes())
        .expect("the DELETE is signed");
}

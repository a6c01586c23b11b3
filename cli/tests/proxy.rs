//! `asyncmcp proxy`, the built binary, between stock MCP clients (MCP
//! Inspector's CLI, the Python MCP SDK 2.x) and a queue-backed server on
//! LocalStack: `asyncmcp serve` running `@modelcontextprotocol/server-everything`,
//! or the Python asyncmcp 0.2.1 server (which speaks only `initialize`).
//!
//! Needs LocalStack and the stock clients: `scripts/test.sh` provides both.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{SqsInbox, SqsOutbox};
use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::eventually;
use asyncmcp_testkit::py_peer::py_peer_python;
use asyncmcp_testkit::real_clients::{inspector, mcp2_python, node, server_everything};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// The settings of the command that a developer's environment could hold;
/// removed so that each test sets what it means to.
const COMMAND_VARS: [&str; 10] = [
    "ASYNCMCP_QUEUE_URL",
    "ASYNCMCP_TOPIC_ARN",
    "ASYNCMCP_REPLY_QUEUE_URL",
    "ASYNCMCP_CLIENT_ID",
    "ASYNCMCP_TIMEOUT",
    "ASYNCMCP_SIGNING_KEY",
    "ASYNCMCP_SIGNING_KEY_PREVIOUS",
    "ASYNCMCP_LOG",
    "ASYNCMCP_PROXY_TOKEN",
    "ASYNCMCP_PROXY_LISTEN",
];

/// Inspector runs so far, naming their catalogs.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// How long any one process of a test may take.
const LIMIT: Duration = Duration::from_secs(90);

/// `asyncmcp ARGS` with LocalStack's settings and none of the developer's.
fn asyncmcp(ls: &LocalStack, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    for var in COMMAND_VARS {
        command.env_remove(var);
    }
    command
        .args(args)
        .env_remove("AWS_PROFILE")
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads `lines` until one contains `needle`; returns it and everything
/// read so far. Panics, showing what was read, after [`LIMIT`] or at the end.
async fn wait_for_line(
    lines: &mut Lines<BufReader<ChildStderr>>,
    needle: &str,
) -> (String, String) {
    let mut seen = String::new();
    loop {
        let line = tokio::time::timeout(LIMIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no `{needle}` line within {LIMIT:?}:\n{seen}"))
            .expect("read stderr")
            .unwrap_or_else(|| panic!("stderr ended before `{needle}`:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return (line, seen);
        }
    }
}

/// Drains `lines` in the background (so the process never blocks on a full
/// pipe); the task returns what it read.
fn drain(
    mut lines: Lines<BufReader<ChildStderr>>,
    mut seen: String,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    })
}

/// A queue-backed server: a process serving a new request queue, killed
/// when dropped.
struct Backend {
    queue: String,
    _process: Child,
}

/// `asyncmcp serve` running server-everything on a new queue.
async fn everything(ls: &LocalStack) -> Backend {
    let queue = ls.create_queue("proxy-requests").await;
    let mut serve = asyncmcp(ls, &["serve", "--queue-url", &queue, "--"]);
    serve.arg(node()).arg(server_everything());
    let mut process = serve.spawn().expect("start asyncmcp serve");
    let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
    let (_, seen) = wait_for_line(&mut lines, "asyncmcp serve: ready:").await;
    drain(lines, seen);
    Backend {
        queue,
        _process: process,
    }
}

/// The Python asyncmcp 0.2.1 server (`tests/interop/py_server.py`: tools
/// `echo` and `add`) on a new queue.
async fn python_backend(ls: &LocalStack) -> Backend {
    let queue = ls.create_queue("proxy-py-requests").await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/py_server.py");
    let mut process = Command::new(py_peer_python())
        .arg(script)
        .arg("--request-queue-url")
        .arg(&queue)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python asyncmcp server");
    let mut lines = BufReader::new(process.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.trim() == "READY" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the Python server printed READY");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Backend {
        queue,
        _process: process,
    }
}

/// Runs `command` to its end, within [`LIMIT`].
async fn finish(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("finished in time")
        .expect("ran")
}

/// The one JSON document a successful run printed.
fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{stdout}\n{stderr}"))
}

/// Inspector's CLI with `target` (a command and its arguments, or a URL
/// and its options) and `method` (the method and its options).
fn inspector_cli(target: &[&str], method: &[&str]) -> Command {
    let mut command = Command::new(node());
    command
        .arg(inspector())
        .arg("--cli")
        .args(target)
        .args(method)
        // Its catalog, out of the developer's home, one per run.
        .env(
            "MCP_CATALOG_PATH",
            std::env::temp_dir().join(format!(
                "asyncmcp-proxy-test-{}-{}.json",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            )),
        );
    command
}

/// Inspector runs `asyncmcp proxy --queue-url QUEUE` over stdio; the AWS
/// settings passed with `-e` (it hands its server only a few variables).
async fn inspect_stdio(ls: &LocalStack, queue: &str, method: &[&str]) -> Value {
    let mut target = vec![
        env!("CARGO_BIN_EXE_asyncmcp"),
        "proxy",
        "--queue-url",
        queue,
    ];
    let settings: Vec<String> = ls
        .aws_env()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    for setting in &settings {
        target.extend(["-e", setting.as_str()]);
    }
    json_of(&finish(inspector_cli(&target, method)).await)
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

#[tokio::test]
async fn inspector_over_stdio_reaches_server_everything_through_the_queue() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let q = backend.queue.as_str();

    let tools = names(
        &inspect_stdio(ls, q, &["--method", "tools/list"]).await,
        "tools",
    );
    for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(tools.iter().any(|name| name == tool), "{tool} in {tools:?}");
    }
    let echo = inspect_stdio(
        ls,
        q,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=over the queue",
        ],
    )
    .await;
    assert_eq!(echo["content"][0]["text"], "Echo: over the queue", "{echo}");
    let sum = inspect_stdio(
        ls,
        q,
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
    let long = inspect_stdio(
        ls,
        q,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "trigger-long-running-operation",
            "--tool-arg",
            "duration=1",
            "--tool-arg",
            "steps=2",
        ],
    )
    .await;
    let text = long["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Long running operation completed"),
        "{long}"
    );

    let resources = inspect_stdio(ls, q, &["--method", "resources/list"]).await;
    let uri = resources["resources"][0]["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("a resource: {resources}"))
        .to_owned();
    let read = inspect_stdio(ls, q, &["--method", "resources/read", "--uri", &uri]).await;
    assert_eq!(read["contents"][0]["uri"], json!(uri), "{read}");

    let prompts = names(
        &inspect_stdio(ls, q, &["--method", "prompts/list"]).await,
        "prompts",
    );
    assert!(
        prompts.iter().any(|name| name == "args-prompt"),
        "{prompts:?}"
    );
    let prompt = inspect_stdio(
        ls,
        q,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "args-prompt",
            "--prompt-args",
            "city=Lyon",
        ],
    )
    .await;
    assert!(
        prompt["messages"][0]["content"]["text"]
            .as_str()
            .is_some_and(|text| text.contains("Lyon")),
        "{prompt}"
    );
}

/// A running `asyncmcp proxy --listen 127.0.0.1:0`, killed when dropped.
struct HttpProxy {
    url: String,
    process: Child,
    stderr: tokio::task::JoinHandle<String>,
}

/// Starts `asyncmcp proxy --listen 127.0.0.1:0` for `queue`, with `args`
/// and `env` added; returns once it listens.
async fn http_proxy(
    ls: &LocalStack,
    queue: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> HttpProxy {
    let mut command = asyncmcp(
        ls,
        &["proxy", "--queue-url", queue, "--listen", "127.0.0.1:0"],
    );
    command.args(args).envs(env.iter().copied());
    let mut process = command.spawn().expect("start asyncmcp proxy");
    let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
    let (line, seen) = wait_for_line(&mut lines, "asyncmcp proxy: listening on ").await;
    let url = line.rsplit(' ').next().expect("a URL").to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{line}"
    );
    HttpProxy {
        url,
        process,
        stderr: drain(lines, seen),
    }
}

#[tokio::test]
async fn inspector_over_http_reaches_server_everything_through_the_queue() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let proxy = http_proxy(ls, &backend.queue, &[], &[]).await;
    let http = [proxy.url.as_str(), "--transport", "http"];

    let listed = json_of(&finish(inspector_cli(&http, &["--method", "tools/list"])).await);
    assert!(
        names(&listed, "tools").iter().any(|name| name == "get-sum"),
        "{listed}"
    );
    // Three sessions at once, over the one queue connection.
    let sum = |a: &'static str, b: &'static str| {
        let method = [
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            a,
            "--tool-arg",
            b,
        ];
        finish(inspector_cli(&http, &method))
    };
    let (first, second, third) = tokio::join!(
        sum("a=20", "b=22"),
        sum("a=1", "b=2"),
        sum("a=100", "b=200")
    );
    for (output, text) in [
        (first, "The sum of 20 and 22 is 42."),
        (second, "The sum of 1 and 2 is 3."),
        (third, "The sum of 100 and 200 is 300."),
    ] {
        let sum = json_of(&output);
        assert_eq!(sum["content"][0]["text"], text, "{sum}");
    }
}

/// `HOST:PORT` of `http://HOST:PORT/mcp`.
fn authority_of(url: &str) -> &str {
    url.strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .expect("http://HOST:PORT/mcp")
}

/// The status code of a raw `initialize` POST to `url`, with `authorization`
/// as the `Authorization` header.
async fn post_status(url: &str, authorization: Option<&str>) -> u16 {
    post_status_as(url, authority_of(url), authorization).await
}

/// [`post_status`] with `host` as the `Host` header.
async fn post_status_as(url: &str, host: &str, authorization: Option<&str>) -> u16 {
    let authority = authority_of(url);
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}
    })
    .to_string();
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("a status line");
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    status
        .parse()
        .unwrap_or_else(|_| panic!("a status code in {:?}", String::from_utf8_lossy(&head)))
}

#[tokio::test]
async fn over_http_a_bearer_token_from_the_environment_is_required() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let token = format!("t-{}", std::process::id());
    let proxy = http_proxy(
        ls,
        &backend.queue,
        &["--bearer-token-env", "MY_PROXY_TOKEN"],
        &[("MY_PROXY_TOKEN", &token)],
    )
    .await;

    assert_eq!(post_status(&proxy.url, None).await, 401, "no token");
    assert_eq!(
        post_status(&proxy.url, Some("Bearer wrong")).await,
        401,
        "a wrong token"
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        post_status(&proxy.url, Some(&bearer)).await,
        200,
        "the token"
    );

    let header = format!("Authorization: {bearer}");
    let http = [proxy.url.as_str(), "--transport", "http"];
    let sum = json_of(
        &finish(inspector_cli(
            &http,
            &[
                "--header",
                &header,
                "--method",
                "tools/call",
                "--tool-name",
                "get-sum",
                "--tool-arg",
                "a=1",
                "--tool-arg",
                "b=1",
            ],
        ))
        .await,
    );
    assert_eq!(
        sum["content"][0]["text"], "The sum of 1 and 1 is 2.",
        "{sum}"
    );
    let refused = finish(inspector_cli(&http, &["--method", "tools/list"])).await;
    assert!(
        !refused.status.success(),
        "Inspector without the token is refused"
    );
}

/// DNS rebinding: a web page of `evil.example`, whose name the attacker
/// then points at 127.0.0.1, reaches the proxy with `Host: evil.example`.
#[tokio::test]
async fn over_http_a_foreign_host_is_refused_and_the_token_stays_out_of_ps() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let open = http_proxy(ls, &backend.queue, &[], &[]).await;
    let port = authority_of(&open.url)
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    for host in [format!("evil.example:{port}"), "evil.example".to_owned()] {
        assert_eq!(
            post_status_as(&open.url, &host, None).await,
            403,
            "Host: {host}"
        );
    }
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        assert_eq!(
            post_status_as(&open.url, &host, None).await,
            200,
            "Host: {host}"
        );
    }

    // The token comes from the environment only: the command line, which
    // `ps` shows every user, holds no trace of it.
    let token = format!("tok-{}", asyncmcp_testkit::unique_name("proxy"));
    let guarded = http_proxy(
        ls,
        &backend.queue,
        &[],
        &[("ASYNCMCP_PROXY_TOKEN", token.as_str())],
    )
    .await;
    let pid = guarded.process.id().expect("a running proxy");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read its command line");
    let words: Vec<String> = cmdline
        .split(|byte| *byte == 0)
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    assert!(
        words.iter().any(|word| word == "proxy"),
        "the proxy's command line: {words:?}"
    );
    assert!(
        !words.iter().any(|word| word.contains(&token)),
        "no token in {words:?}"
    );
    // The token is in force, and the Host check stays on with it.
    let bearer = format!("Bearer {token}");
    let local = authority_of(&guarded.url).to_owned();
    assert_eq!(post_status(&guarded.url, None).await, 401, "no token");
    assert_eq!(post_status(&guarded.url, Some(&bearer)).await, 200);
    assert_eq!(
        post_status_as(&guarded.url, "evil.example", Some(&bearer)).await,
        403,
        "a foreign Host, even with the token"
    );
    assert_eq!(
        post_status_as(&guarded.url, &local, Some(&bearer)).await,
        200
    );
}

#[tokio::test]
async fn a_public_address_without_a_token_is_refused_before_connecting() {
    let ls = aws::localstack().await;
    let output = finish(asyncmcp(
        ls,
        &[
            "proxy",
            "--queue-url",
            "http://localhost:4566/000000000000/none",
            "--listen",
            "0.0.0.0:0",
        ],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("ASYNCMCP_PROXY_TOKEN"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// Runs `tests/clients/mcp2_client.py ARGS` (the Python MCP SDK 2.x) and
/// checks what it saw: the tools, echo's answer, and the 4 progress updates
/// of trigger-long-running-operation, each of which crossed serve, the
/// queue and the proxy, its token mapped at each hop.
async fn mcp2_client_sees_tools_and_progress(ls: &LocalStack, args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp2_client.py");
    let mut client = Command::new(mcp2_python());
    client.arg(script).args(args).envs(ls.aws_env());
    for var in COMMAND_VARS {
        client.env_remove(var);
    }
    let report = json_of(&finish(client).await);
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"trigger-long-running-operation"),
        "{report}"
    );
    assert_eq!(report["echo"], "Echo: hello from mcp 2", "{report}");
    let long = report["long"].as_str().unwrap_or_default();
    assert!(
        long.starts_with("Long running operation completed"),
        "{report}"
    );
    let updates = report["progress"].as_array().expect("progress");
    let progress: Vec<f64> = updates
        .iter()
        .filter_map(|update| update["progress"].as_f64())
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0], "{report}");
    assert!(
        updates.iter().all(|update| update["total"] == 4.0),
        "{report}"
    );
}

#[tokio::test]
async fn the_python_mcp_sdk_2_calls_tools_and_sees_progress_over_stdio() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let proxy = env!("CARGO_BIN_EXE_asyncmcp");
    mcp2_client_sees_tools_and_progress(ls, &[proxy, "proxy", "--queue-url", &backend.queue]).await;
}

#[tokio::test]
async fn the_python_mcp_sdk_2_calls_tools_and_sees_progress_over_http() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let proxy = http_proxy(ls, &backend.queue, &[], &[]).await;
    mcp2_client_sees_tools_and_progress(ls, &["--http", &proxy.url]).await;
}

/// Whether the queue `url` still exists (among the reply queues).
async fn queue_exists(ls: &LocalStack, url: &str) -> bool {
    let name = url.rsplit('/').next().expect("a queue name");
    let listed = ls
        .sqs_client()
        .await
        .list_queues()
        .queue_name_prefix("asyncmcp-reply-")
        .max_results(1000)
        .send()
        .await
        .expect("ListQueues");
    listed
        .queue_urls()
        .iter()
        .any(|listed| listed.rsplit('/').next() == Some(name))
}

/// The reply queue named in the `connected` log line of `stderr`.
fn reply_queue_of(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.contains("connected") && line.contains("reply_queue="))
        .unwrap_or_else(|| panic!("no `connected` line:\n{stderr}"));
    let start = line.find("reply_queue=").expect("reply_queue=") + "reply_queue=".len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

/// `asyncmcp proxy` over stdio, driven with raw JSON-RPC lines; killed
/// when dropped.
struct StdioProxy {
    process: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl StdioProxy {
    /// Starts the proxy for `queue` (logging at `info`, for the reply queue's
    /// name) and initializes it.
    async fn start(ls: &LocalStack, queue: &str) -> Self {
        let mut command = asyncmcp(ls, &["proxy", "--queue-url", queue]);
        command.env("ASYNCMCP_LOG", "info").stdin(Stdio::piped());
        let mut process = command.spawn().expect("start asyncmcp proxy");
        let mut proxy = Self {
            stdin: process.stdin.take(),
            stdout: BufReader::new(process.stdout.take().expect("stdout")).lines(),
            stderr: drain(
                BufReader::new(process.stderr.take().expect("stderr")).lines(),
                String::new(),
            ),
            process,
        };
        proxy
            .send(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}}),
            )
            .await;
        let initialized = proxy.answer(0).await;
        assert!(
            initialized["result"]["serverInfo"].is_object(),
            "{initialized}"
        );
        proxy
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        proxy
    }

    async fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .expect("write to the proxy");
    }

    /// The answer to request `id` (messages before it are skipped).
    async fn answer(&mut self, id: u64) -> Value {
        tokio::time::timeout(LIMIT, async {
            while let Some(line) = self.stdout.next_line().await.expect("read stdout") {
                let message: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON-RPC on stdout ({e}): {line}"));
                if message["id"] == id {
                    return message;
                }
            }
            panic!("stdout ended before the answer to {id}");
        })
        .await
        .expect("an answer in time")
    }

    /// Closes stdin; the proxy must exit with 0. Returns its stderr.
    async fn close(mut self) -> String {
        drop(self.stdin.take());
        let status = tokio::time::timeout(LIMIT, self.process.wait())
            .await
            .expect("exited in time")
            .expect("wait");
        let stderr = (&mut self.stderr).await.expect("stderr");
        assert!(status.success(), "{status}\n{stderr}");
        stderr
    }
}

/// A tools/call request.
fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

#[tokio::test]
async fn the_stdio_proxy_deletes_its_reply_queue_when_stdin_closes() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let mut proxy = StdioProxy::start(ls, &backend.queue).await;
    proxy
        .send(tool_call(1, "get-sum", json!({"a": 4, "b": 5})))
        .await;
    let answer = proxy.answer(1).await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "The sum of 4 and 5 is 9.",
        "{answer}"
    );

    let stderr = proxy.close().await;
    let reply_queue = reply_queue_of(&stderr);
    assert!(reply_queue.contains("asyncmcp-reply-"), "{reply_queue}");
    assert!(
        !queue_exists(ls, &reply_queue).await,
        "{reply_queue} is gone\n{stderr}"
    );
}

#[tokio::test]
async fn a_cancellation_reaches_the_queue_backed_server() {
    let ls = aws::localstack().await;
    // The test kit's demo server, whose counters show a cancelled sleep.
    let queue = ls.create_queue("proxy-demo-requests").await;
    let sqs_client = ls.sqs_client().await;
    let inbox = SqsInbox::open(sqs_client.clone(), &queue)
        .await
        .expect("open the request queue");
    let stats = Arc::new(DemoStats::default());
    let stop = CancellationToken::new();
    QueueServer::builder(inbox, SqsOutbox::new(sqs_client))
        .build(DemoServer::factory(stats.clone()))
        .spawn(stop.clone());
    let _stop = stop.drop_guard();

    let mut proxy = StdioProxy::start(ls, &queue).await;
    proxy
        .send(tool_call(1, "sleep", json!({"ms": 60_000})))
        .await;
    assert!(
        eventually(LIMIT, || stats.calls.load(Ordering::Relaxed) == 1).await,
        "the sleep started"
    );
    proxy
        .send(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": 1, "reason": "changed my mind"}}),
        )
        .await;
    assert!(
        eventually(LIMIT, || stats.sleeps_cancelled.load(Ordering::Relaxed)
            == 1)
        .await,
        "the server's sleep was cancelled"
    );
    proxy
        .send(tool_call(2, "add", json!({"a": 2, "b": 3})))
        .await;
    let sum = proxy.answer(2).await;
    assert_eq!(sum["result"]["content"][0]["text"], "5", "{sum}");
    assert_eq!(stats.sleeps_completed.load(Ordering::Relaxed), 0);
    proxy.close().await;
}

#[tokio::test]
async fn the_http_proxy_deletes_its_reply_queue_on_sigterm() {
    let ls = aws::localstack().await;
    let backend = everything(ls).await;
    let mut proxy = http_proxy(ls, &backend.queue, &[], &[("ASYNCMCP_LOG", "info")]).await;
    let http = [proxy.url.as_str(), "--transport", "http"];
    let listed = json_of(&finish(inspector_cli(&http, &["--method", "tools/list"])).await);
    assert!(
        names(&listed, "tools").iter().any(|name| name == "echo"),
        "{listed}"
    );

    let pid = proxy.process.id().expect("a pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(LIMIT, proxy.process.wait())
        .await
        .expect("exited in time")
        .expect("wait");
    let stderr = (&mut proxy.stderr).await.expect("stderr");
    assert!(status.success(), "{status}\n{stderr}");
    let reply_queue = reply_queue_of(&stderr);
    assert!(
        !queue_exists(ls, &reply_queue).await,
        "{reply_queue} is gone\n{stderr}"
    );
}

#[tokio::test]
async fn inspector_reaches_a_python_asyncmcp_server_that_speaks_only_initialize() {
    let ls = aws::localstack().await;
    let backend = python_backend(ls).await;
    let listed = inspect_stdio(ls, &backend.queue, &["--method", "tools/list"]).await;
    let mut tools = names(&listed, "tools");
    tools.sort();
    assert_eq!(tools, ["add", "echo"], "{listed}");
    let echoed = inspect_stdio(
        ls,
        &backend.queue,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "text=hello python",
        ],
    )
    .await;
    assert_eq!(echoed["content"][0]["text"], "hello python", "{echoed}");
}

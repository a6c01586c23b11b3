//! `asyncmcp serve`, the built binary, in front of stock stdio MCP servers
//! (server-everything on Node, a Python SDK 2.x `MCPServer`), called by
//! stock clients (rmcp over the library's queue transport, the Python
//! asyncmcp 0.2.1 client, `asyncmcp call` over SNS) on LocalStack.
//!
//! Needs LocalStack and the stock servers and clients: `scripts/test.sh`
//! starts and installs them (see `asyncmcp_testkit::real_clients`).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use asyncmcp::QueueClientTransport;
use asyncmcp::queue::sqs;
use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::py_peer::py_peer_python;
use asyncmcp_testkit::real_clients;
use asyncmcp_testkit::support::{call, text_of};
use asyncmcp_testkit::unique_name;
use common::serve::{Serve, is_running, run_to_end, server_everything};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::Transport;
use serde_json::{Value, json};

/// A client of the server behind `queue`, with a reply queue of its own
/// (deleted on close).
async fn transport(ls: &LocalStack, queue: &str) -> QueueClientTransport {
    QueueClientTransport::builder(queue)
        .wait(Duration::from_secs(1))
        .connect_sqs(&sqs::client(&ls.sdk_config().await))
        .await
        .expect("connect a client")
}

/// An initialized rmcp client of the server behind `queue`.
async fn client(ls: &LocalStack, queue: &str) -> RunningService<RoleClient, ()> {
    ().serve(transport(ls, queue).await)
        .await
        .expect("initialize through serve")
}

/// The sorted names of the server's tools.
async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .iter()
        .map(|tool| tool.name.to_string())
        .collect();
    names.sort();
    names
}

/// The text `tool` answers to `arguments`, which must not be an error.
async fn call_text(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    arguments: Value,
) -> String {
    let result = client
        .call_tool(call(tool, arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    text_of(&result)
}

/// A file of this package's tests, e.g. `servers/fastmcp_server.py`.
fn test_file(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(path)
        .display()
        .to_string()
}

#[tokio::test]
async fn server_everything_answers_tools_resources_and_prompts_through_serve() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-everything").await;
    let _serve = Serve::start(ls, &queue, &server_everything()).await;
    let client = client(ls, &queue).await;

    let info = client.peer_info().expect("the server's info");
    let name = info.server_info.as_ref().map(|server| server.name.as_str());
    assert_eq!(name, Some("mcp-servers/everything"), "{info:?}");
    let names = tool_names(&client).await;
    for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(names.iter().any(|name| name == tool), "{tool} in {names:?}");
    }
    assert_eq!(
        call_text(&client, "echo", json!({"message": "through a queue"})).await,
        "Echo: through a queue"
    );
    let sum = call_text(&client, "get-sum", json!({"a": 2, "b": 3})).await;
    assert!(sum.contains("is 5"), "{sum}");

    let resources = client.list_all_resources().await.expect("resources/list");
    let first = resources.first().expect("at least one resource");
    let read = client
        .read_resource(serde_json::from_value(json!({"uri": first.uri})).expect("params"))
        .await
        .expect("resources/read");
    let read = serde_json::to_value(&read).expect("JSON");
    let contents = read["contents"].as_array().expect("contents");
    assert!(!contents.is_empty(), "{read}");
    assert_eq!(contents[0]["uri"], json!(first.uri), "{read}");
    assert!(
        contents[0]["text"].as_str().is_some_and(|t| !t.is_empty())
            || contents[0]["blob"].as_str().is_some_and(|b| !b.is_empty()),
        "the first resource has content: {read}"
    );

    let prompts = client.list_all_prompts().await.expect("prompts/list");
    assert!(
        prompts.iter().any(|prompt| prompt.name == "simple-prompt"),
        "{prompts:?}"
    );
    let prompt = client
        .get_prompt(serde_json::from_value(json!({"name": "simple-prompt"})).expect("params"))
        .await
        .expect("prompts/get");
    let prompt = serde_json::to_value(&prompt).expect("JSON");
    assert_eq!(
        prompt["messages"][0]["content"]["text"], "This is a simple prompt without arguments.",
        "{prompt}"
    );
    client.cancel().await.expect("close");
}

/// The progress of a long call comes back to the caller, in order, before
/// its result. Read off the transport itself: rmcp hands notifications to
/// its handler on tasks of their own, which would blur the order.
#[tokio::test]
async fn progress_of_a_long_call_reaches_the_caller_before_its_result() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-progress").await;
    let _serve = Serve::start(ls, &queue, &server_everything()).await;
    let mut transport = transport(ls, &queue).await;
    let send = |value: Value| -> ClientJsonRpcMessage {
        serde_json::from_value(value).expect("a client message")
    };
    transport
        .send(send(json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "serve-test", "version": "1"}},
        })))
        .await
        .expect("send initialize");
    let initialized = receive(&mut transport).await;
    assert_eq!(initialized["id"], 1, "{initialized}");
    assert!(
        initialized["result"]["protocolVersion"].is_string(),
        "{initialized}"
    );
    transport
        .send(send(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ))
        .await
        .expect("send initialized");
    transport
        .send(send(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "trigger-long-running-operation",
                       "arguments": {"duration": 1, "steps": 4},
                       "_meta": {"progressToken": "long-1"}},
        })))
        .await
        .expect("send the call");

    let mut progress = Vec::new();
    let result = loop {
        let message = receive(&mut transport).await;
        match message["method"].as_str() {
            Some("notifications/progress") => {
                assert_eq!(message["params"]["progressToken"], "long-1", "{message}");
                progress.push(message["params"]["progress"].as_f64().expect("a number"));
            }
            Some(_) => {} // e.g. a log message
            None if message["id"] == 2 => break message,
            None => panic!("an answer to nothing asked: {message}"),
        }
    };
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.starts_with("Long running operation completed"),
        "{result}"
    );
    assert!(!progress.is_empty(), "progress before the result");
    assert!(
        progress.windows(2).all(|pair| pair[0] < pair[1]),
        "increasing: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&4.0), "every step: {progress:?}");
    transport.close().await.expect("close");
}

/// The next message on `transport`, as JSON, within 30 s.
async fn receive(transport: &mut QueueClientTransport) -> Value {
    let message: ServerJsonRpcMessage =
        tokio::time::timeout(Duration::from_secs(30), transport.receive())
            .await
            .expect("a message within 30 s")
            .expect("the transport is open");
    serde_json::to_value(&message).expect("JSON")
}

/// Thirty calls at once over one client and one server process: each is
/// answered with its own message.
#[tokio::test]
async fn concurrent_calls_are_multiplexed_over_one_server_process() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-many").await;
    let serve = Serve::start(ls, &queue, &server_everything()).await;
    let before = serve.children();
    assert_eq!(before.len(), 1, "one server process: {before:?}");
    let client = client(ls, &queue).await;
    let calls = (0..30).map(|i| {
        let peer = client.peer().clone();
        async move {
            let message = format!("call number {i}");
            let result = peer
                .call_tool(call("echo", json!({"message": message})))
                .await
                .unwrap_or_else(|e| panic!("echo {i}: {e}"));
            (message, text_of(&result))
        }
    });
    let answers = spawn_all(calls).await;
    assert_eq!(answers.len(), 30);
    for (message, answer) in answers {
        assert_eq!(answer, format!("Echo: {message}"));
    }
    assert_eq!(
        serve.children(),
        before,
        "the same process answered them all"
    );
    client.cancel().await.expect("close");
}

/// Runs every future at once and collects their outputs in order.
async fn spawn_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("the call's task"));
    }
    outputs
}

/// A server written with the Python MCP SDK 2.x (`MCPServer`), served.
#[tokio::test]
async fn a_python_sdk_server_is_served() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-fastmcp").await;
    let command = [
        real_clients::mcp2_python().display().to_string(),
        test_file("servers/fastmcp_server.py"),
    ];
    let _serve = Serve::start(ls, &queue, &command).await;
    let client = client(ls, &queue).await;
    assert_eq!(tool_names(&client).await, ["add", "shout"]);
    assert_eq!(
        call_text(&client, "add", json!({"a": 2, "b": 3})).await,
        "5"
    );
    assert_eq!(
        call_text(&client, "shout", json!({"text": "queued"})).await,
        "QUEUED!"
    );
    client.cancel().await.expect("close");
}

/// The Python asyncmcp 0.2.1 client (`mcp.ClientSession` over its SQS
/// transport) calls server-everything through serve.
#[tokio::test]
async fn the_python_asyncmcp_client_calls_through_serve() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-py-requests").await;
    let replies = ls.create_queue("serve-py-replies").await;
    let _serve = Serve::start(ls, &queue, &server_everything()).await;
    let script = test_file("clients/py_asyncmcp_client.py");
    let run = tokio::process::Command::new(py_peer_python())
        .args([
            script.as_str(),
            "--server-queue-url",
            &queue,
            "--reply-queue-url",
            &replies,
            "--message",
            "hello from python",
        ])
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the Python client finished within 90 s")
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["server"], "mcp-servers/everything", "{stdout}");
    let tools = lines[1]["tools"].as_array().expect("tools");
    for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(tools.contains(&json!(tool)), "{tool} in {tools:?}");
    }
    assert_eq!(lines[2]["echo"], "Echo: hello from python", "{stdout}");
}

/// A request topic subscribed to the queue (made by `asyncmcp setup`), serve
/// on the queue, `asyncmcp call --topic-arn` publishing to the topic.
#[tokio::test]
async fn call_over_a_request_topic_is_answered() {
    let ls = aws::localstack().await;
    let queue = unique_name("serve-sns");
    let topic = unique_name("serve-sns-topic");
    let setup = run_to_end(
        ls,
        &["setup", "--queue", &queue, "--topic", &topic, "--json"],
        &[],
    )
    .await
    .ok();
    let made: Value = serde_json::from_str(&setup.stdout).expect("setup prints JSON");
    let field = |name: &str| {
        made[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {made}"))
            .to_owned()
    };
    let (queue_url, topic_arn) = (field("queue_url"), field("topic_arn"));
    let _serve = Serve::start(ls, &queue_url, &server_everything()).await;
    let called = run_to_end(
        ls,
        &[
            "call",
            "--topic-arn",
            &topic_arn,
            "echo",
            r#"{"message":"over SNS"}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(called.text(), "Echo: over SNS");
}

/// A client that counts the progress notifications it is sent.
#[derive(Clone)]
struct ProgressCounter(tokio::sync::watch::Sender<usize>);

impl rmcp::ClientHandler for ProgressCounter {
    async fn on_progress(
        &self,
        _params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.0.send_modify(|seen| *seen += 1);
    }
}

/// SIGTERM while a call runs: the call is still answered, serve exits 0 and
/// its server process is gone.
#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-drain").await;
    let mut serve = Serve::start(ls, &queue, &server_everything()).await;
    let children = serve.children();
    assert_eq!(children.len(), 1, "one server process: {children:?}");
    let (counter, mut progress) = tokio::sync::watch::channel(0);
    let client = ProgressCounter(counter)
        .serve(transport(ls, &queue).await)
        .await
        .expect("initialize through serve");
    let peer = client.peer().clone();
    let long = tokio::spawn(async move {
        let params = serde_json::from_value(json!({
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 3, "steps": 3},
            "_meta": {"progressToken": "drain"},
        }))
        .expect("params");
        peer.call_tool(params).await
    });
    // The first step's progress: the call is running in the server process.
    tokio::time::timeout(Duration::from_secs(30), progress.wait_for(|seen| *seen > 0))
        .await
        .expect("progress within 30 s")
        .expect("the client is running");
    serve.signal("TERM");

    let result = tokio::time::timeout(Duration::from_secs(30), long)
        .await
        .expect("answered within 30 s")
        .expect("the call's task")
        .expect("the call in flight is answered");
    assert_eq!(
        text_of(&result),
        "Long running operation completed. Duration: 3 seconds, Steps: 3."
    );
    let status = serve.wait(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", serve.stderr());
    assert!(serve.stdout().is_empty(), "stdout: {}", serve.stdout());
    for pid in children {
        assert!(!is_running(pid), "server process {pid} is gone");
    }
    let _ = client.cancel().await;
}

#[tokio::test]
async fn help_shows_an_example() {
    let ls = aws::localstack().await;
    let help = run_to_end(ls, &["serve", "--help"], &[]).await.ok();
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
    assert!(
        help.stdout.contains("asyncmcp serve --queue-url"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("--children"), "{}", help.stdout);
}

#[tokio::test]
async fn signatures_required_without_a_key_is_refused() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-unsigned").await;
    let mut args = vec!["serve", "--queue-url", &queue, "--require-signatures", "--"];
    let command = server_everything();
    args.extend(command.iter().map(String::as_str));
    let run = run_to_end(ls, &args, &[]).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(
        run.stderr
            .contains("--require-signatures needs a key in ASYNCMCP_SIGNING_KEY"),
        "{run:#?}"
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
}

#[tokio::test]
async fn a_server_that_cannot_start_is_reported() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-missing").await;
    let missing = format!("/nonexistent/{}", unique_name("mcp-server"));
    let run = run_to_end(
        ls,
        &[
            "serve",
            "--queue-url",
            &queue,
            "--start-timeout",
            "2s",
            "--",
            &missing,
        ],
        &[],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("no server process was ready within 2s"),
        "{run:#?}"
    );
    assert!(run.stderr.contains(&missing), "names the command: {run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
}

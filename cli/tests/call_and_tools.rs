//! `asyncmcp call` and `asyncmcp tools`, the built binary, against a library
//! `QueueServer` serving the test kit's demo tools on LocalStack (SQS, and
//! SNS+SQS).
//!
//! Needs LocalStack: `scripts/test.sh` starts it (see `asyncmcp_testkit::aws`).

use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::RoutingOutbox;
use asyncmcp::queue::sns::{self, SnsOutbox};
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp::wire::signing::SigningKeys;
use asyncmcp_testkit::aws::{self, LocalStack, TopicQueue};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::eventually;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The settings of the command that a developer's environment could hold;
/// removed so that each test sets what it means to.
const COMMAND_VARS: [&str; 8] = [
    "ASYNCMCP_QUEUE_URL",
    "ASYNCMCP_TOPIC_ARN",
    "ASYNCMCP_REPLY_QUEUE_URL",
    "ASYNCMCP_CLIENT_ID",
    "ASYNCMCP_TIMEOUT",
    "ASYNCMCP_SIGNING_KEY",
    "ASYNCMCP_SIGNING_KEY_PREVIOUS",
    "ASYNCMCP_LOG",
];

/// A 32-byte key, in hex as the command reads it from the environment.
const KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// A demo server on LocalStack, stopped when dropped.
struct Server {
    /// Where requests go: the queue URL, or the topic ARN.
    address: String,
    stats: Arc<DemoStats>,
    _stop: DropGuard,
}

/// A demo server on a new queue of its own; with `signing`, it signs replies
/// and refuses requests that are not signed with [`KEY_HEX`].
async fn sqs_server(ls: &LocalStack, signing: bool) -> Server {
    let queue = ls.create_queue("cli-requests").await;
    serve(ls, queue.clone(), queue, signing).await
}

/// A demo server on a new queue subscribed to a new topic.
async fn sns_server(ls: &LocalStack) -> Server {
    let sdk = ls.sdk_config().await;
    let topic = TopicQueue::create(&sqs::client(&sdk), &sns::client(&sdk), "cli-sns", true).await;
    serve(ls, topic.topic, topic.queue, false).await
}

async fn serve(ls: &LocalStack, address: String, queue: String, signing: bool) -> Server {
    let sdk = ls.sdk_config().await;
    let sqs_client = sqs::client(&sdk);
    let inbox = SqsInbox::open(sqs_client.clone(), &queue)
        .await
        .expect("open the request queue");
    let outbox = RoutingOutbox::new()
        .with(Arc::new(SnsOutbox::new(sns::client(&sdk))))
        .with(Arc::new(SqsOutbox::new(sqs_client)));
    let mut builder = QueueServer::builder(inbox, outbox);
    if signing {
        let key = (0..KEY_HEX.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&KEY_HEX[i..i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>();
        builder = builder.signing(SigningKeys::new(key, None).expect("a key"), true);
    }
    let stats = Arc::new(DemoStats::default());
    let stop = CancellationToken::new();
    builder
        .build(DemoServer::factory(stats.clone()))
        .spawn(stop.clone());
    Server {
        address,
        stats,
        _stop: stop.drop_guard(),
    }
}

/// The command `asyncmcp <args>` with LocalStack's settings and none of the
/// developer's.
fn command(ls: &LocalStack, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    for var in COMMAND_VARS {
        command.env_remove(var);
    }
    command
        .args(args)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end (within 90 s).
async fn run(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("asyncmcp finished within 90 s")
        .expect("run asyncmcp")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout holds one JSON document, which is returned.
fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

/// The value of `field=` in the log line of stderr that says `message`.
fn logged(stderr: &str, message: &str, field: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.contains(message))
        .unwrap_or_else(|| panic!("no `{message}` line in stderr:\n{stderr}"));
    let start = line
        .find(&format!("{field}="))
        .unwrap_or_else(|| panic!("no {field} in `{line}`"))
        + field.len()
        + 1;
    line[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

/// Whether the queue `url` still exists: among the queues named with its
/// prefix (the command's reply queues are all `asyncmcp-reply-...`).
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

/// Whether the topic `arn` still exists.
async fn topic_exists(ls: &LocalStack, arn: &str) -> bool {
    sns::client(&ls.sdk_config().await)
        .get_topic_attributes()
        .topic_arn(arn)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn tools_lists_the_demo_tools_as_json() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let output = run(command(ls, &["tools", "--queue-url", &server.address])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let listed = stdout_json(&output);
    let mut names: Vec<&str> = listed["tools"]
        .as_array()
        .expect("a tools array")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    names.sort_unstable();
    for tool in ["add", "echo", "fail", "sleep"] {
        assert!(names.contains(&tool), "{tool} in {names:?}");
    }
}

#[tokio::test]
async fn call_prints_the_result_and_deletes_its_reply_queue() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let mut call = command(
        ls,
        &[
            "call",
            "--queue-url",
            &server.address,
            "add",
            r#"{"a":2,"b":3}"#,
        ],
    );
    call.env("ASYNCMCP_LOG", "info");
    let output = run(call).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let result = stdout_json(&output);
    assert_eq!(result["content"][0]["text"], "5", "{result}");
    assert_ne!(result["isError"], true);
    let reply_queue = logged(&stderr, "connected", "reply_queue");
    assert!(reply_queue.contains("asyncmcp-reply-"), "{reply_queue}");
    assert!(
        !queue_exists(ls, &reply_queue).await,
        "the reply queue {reply_queue} is gone"
    );
}

#[tokio::test]
async fn call_over_sns_removes_its_reply_topic_and_queue() {
    let ls = aws::localstack().await;
    let server = sns_server(ls).await;
    let mut call = command(
        ls,
        &[
            "call",
            "--topic-arn",
            &server.address,
            "add",
            r#"{"a":2,"b":3}"#,
        ],
    );
    call.env("ASYNCMCP_LOG", "info");
    let output = run(call).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout_json(&output)["content"][0]["text"], "5");
    let reply_queue = logged(&stderr, "connected", "reply_queue");
    let reply_topic = logged(&stderr, "connected", "reply_address");
    assert!(reply_topic.starts_with("arn:aws:sns:"), "{reply_topic}");
    assert!(
        !queue_exists(ls, &reply_queue).await,
        "{reply_queue} is gone"
    );
    assert!(
        !topic_exists(ls, &reply_topic).await,
        "{reply_topic} is gone"
    );
}

#[tokio::test]
async fn bad_json_arguments_exit_2_and_send_nothing() {
    let ls = aws::localstack().await;
    // A request queue no server reads: whatever was sent would stay there.
    let queue = ls.create_queue("cli-unread").await;
    for arguments in [r#"{"a": 2"#, "[2, 3]"] {
        let mut call = command(ls, &["call", "--queue-url", &queue, "add", arguments]);
        call.env("ASYNCMCP_LOG", "info");
        let output = run(call).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing on stdout");
        assert!(stderr.contains("arguments"), "a clear message: {stderr}");
        assert!(!stderr.contains("connected"), "never connected: {stderr}");
    }
    let sqs_client = ls.sqs_client().await;
    assert_eq!(
        aws::queue_depth(&sqs_client, &queue).await,
        0,
        "nothing sent"
    );
}

#[tokio::test]
async fn an_unknown_tool_exits_1_with_the_json_rpc_error_on_stderr() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let output = run(command(
        ls,
        &["call", "--queue-url", &server.address, "no_such_tool", "{}"],
    ))
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {}",
        text(&output.stdout)
    );
    let json = stderr
        .split_once("JSON-RPC error: ")
        .map(|(_, json)| json.trim())
        .unwrap_or_else(|| panic!("a JSON-RPC error on stderr: {stderr}"));
    let error: Value = serde_json::from_str(json).expect("the error as JSON");
    assert!(error["code"].is_i64(), "{error}");
    assert_eq!(error["code"], -32602, "invalid params: {error}");
    assert_eq!(error["message"], "tool not found", "{error}");
}

#[tokio::test]
async fn a_tool_error_exits_3_with_the_result_on_stdout() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let output = run(command(
        ls,
        &[
            "call",
            "--queue-url",
            &server.address,
            "fail",
            r#"{"message":"boom"}"#,
        ],
    ))
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let result = stdout_json(&output);
    assert_eq!(result["isError"], true, "{result}");
    assert!(result.to_string().contains("boom"), "{result}");
}

#[tokio::test]
async fn progress_draws_nothing_when_stderr_is_not_a_terminal() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let output = run(command(
        ls,
        &[
            "call",
            "--queue-url",
            &server.address,
            "sleep",
            r#"{"ms":400}"#,
        ],
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(stdout_json(&output)["content"][0]["text"], "slept 400 ms");
    assert!(
        output.stderr.is_empty(),
        "nothing on stderr: {}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn a_signing_server_answers_only_calls_signed_with_the_key_from_the_environment() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, true).await;
    let args = [
        "call",
        "--queue-url",
        &server.address,
        "add",
        r#"{"a":2,"b":3}"#,
    ];

    let mut signed = command(ls, &args);
    signed.env("ASYNCMCP_SIGNING_KEY", KEY_HEX);
    let output = run(signed).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(stdout_json(&output)["content"][0]["text"], "5");

    let output = run(command(ls, &args)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "refused: {stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.contains("not signed"), "says why: {stderr}");

    let mut short_key = command(ls, &args);
    short_key.env("ASYNCMCP_SIGNING_KEY", "00ff");
    let output = run(short_key).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(
        server.stats.calls.load(Ordering::Relaxed),
        1,
        "one call ran"
    );
}

/// Runs `asyncmcp call sleep` for 30 s with `extra` arguments, and returns
/// the process once its call is running on `server`, with the reply queue.
async fn start_long_call(
    ls: &LocalStack,
    server: &Server,
    extra: &[&str],
) -> (
    tokio::process::Child,
    String,
    tokio::task::JoinHandle<String>,
) {
    let mut args = vec![
        "call",
        "--queue-url",
        &server.address,
        "sleep",
        r#"{"ms":30000}"#,
    ];
    args.extend_from_slice(extra);
    let mut call = command(ls, &args);
    call.env("ASYNCMCP_LOG", "info");
    let mut child = call.spawn().expect("start asyncmcp call");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let reply_queue = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no `connected` line within 30 s:\n{seen}"))
            .expect("read stderr")
            .unwrap_or_else(|| panic!("stderr ended:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("connected") {
            break logged(&line, "connected", "reply_queue");
        }
    };
    // The rest of stderr, for the assertions.
    let rest = tokio::spawn(async move {
        let mut rest = seen;
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let stats = server.stats.clone();
    assert!(
        eventually(Duration::from_secs(30), || stats
            .calls
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "the call started on the server"
    );
    (child, reply_queue, rest)
}

/// Stops a long call with `signal`: it must exit with `code`, having
/// cancelled the call at the server and deleted its reply queue.
async fn a_signal_cancels_the_call_and_deletes_the_reply_queue(signal: &str, code: i32) {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let (mut child, reply_queue, stderr) = start_long_call(ls, &server, &[]).await;
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exited within 30 s of the signal")
        .expect("wait");
    let stderr = stderr.await.expect("stderr read");
    assert_eq!(status.code(), Some(code), "{stderr}");
    assert_cleaned_up_and_cancelled(ls, &server, &reply_queue, &stderr).await;
}

/// After a stopped call: its reply queue is gone and the server's `sleep`
/// was cancelled (`stderr` is the command's, for the failure message).
async fn assert_cleaned_up_and_cancelled(
    ls: &LocalStack,
    server: &Server,
    reply_queue: &str,
    stderr: &str,
) {
    assert!(
        !queue_exists(ls, reply_queue).await,
        "{reply_queue} is gone"
    );
    let stats = server.stats.clone();
    assert!(
        eventually(Duration::from_secs(20), || {
            stats.sleeps_cancelled.load(Ordering::Relaxed) == 1
        })
        .await,
        "the server's call was cancelled: {stderr}"
    );
}

#[tokio::test]
async fn ctrl_c_cancels_the_call_deletes_the_reply_queue_and_exits_130() {
    a_signal_cancels_the_call_and_deletes_the_reply_queue("-INT", 130).await;
}

#[tokio::test]
async fn sigterm_cancels_the_call_deletes_the_reply_queue_and_exits_143() {
    a_signal_cancels_the_call_and_deletes_the_reply_queue("-TERM", 143).await;
}

#[tokio::test]
async fn the_timeout_cancels_the_call_and_exits_124() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let (mut child, reply_queue, stderr) = start_long_call(ls, &server, &["--timeout", "8s"]).await;
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("exited within 40 s")
        .expect("wait");
    let stderr = stderr.await.expect("stderr read");
    assert_eq!(status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("--timeout"), "says why: {stderr}");
    assert_cleaned_up_and_cancelled(ls, &server, &reply_queue, &stderr).await;
}

#[tokio::test]
async fn a_given_reply_queue_is_used_and_left_in_place() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    let replies = ls.create_queue("cli-replies").await;
    let output = run(command(
        ls,
        &[
            "call",
            "--queue-url",
            &server.address,
            "--reply-queue-url",
            &replies,
            "--client-id",
            "cli-test",
            "add",
            r#"{"a":2,"b":3}"#,
        ],
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(stdout_json(&output)["content"][0]["text"], "5");
    let sqs_client = ls.sqs_client().await;
    assert!(
        sqs::queue_arn(&sqs_client, &replies).await.is_ok(),
        "the given reply queue is still there"
    );
    assert_eq!(
        aws::queue_depth(&sqs_client, &replies).await,
        0,
        "its reply was deleted"
    );
}

#[tokio::test]
async fn what_a_server_sends_reaches_a_terminal_escaped_and_jq_unchanged() {
    let ls = aws::localstack().await;
    let server = sqs_server(ls, false).await;
    // Sets the terminal's title, clears the screen (C1 CSI), reverses text.
    let hostile = "a\u{1b}]0;owned\u{7}b\u{9b}2Jc\u{202e}d";
    let arguments = serde_json::json!({ "text": hostile }).to_string();
    let output = run(command(
        ls,
        &["call", "--queue-url", &server.address, "echo", &arguments],
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        !stdout.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']),
        "raw control characters on stdout: {stdout:?}"
    );
    assert_eq!(
        stdout_json(&output)["content"][0]["text"],
        hostile,
        "the same text once parsed"
    );
}

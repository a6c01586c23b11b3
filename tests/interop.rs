//! Interoperability with Python asyncmcp 0.2.1 over SQS and over SNS+SQS,
//! both ways, on LocalStack. `scripts/test.sh` installs the Python peer
//! (`ASYNCMCP_PY_PEER`).
#![cfg(feature = "sqs")]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::sqs::{SqsInbox, SqsOutbox};
use asyncmcp::{QueueClientTransport, QueueServer};
#[cfg(feature = "sns")]
use asyncmcp::{
    client::SnsReplies,
    queue::RoutingOutbox,
    queue::sns::{self, SnsOutbox},
    queue::sqs,
};
use asyncmcp_testkit::aws;
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::py_peer::py_peer_python;
use asyncmcp_testkit::support::{call, text_of};
use rmcp::ServiceExt;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Python's `mcp.ClientSession` over `asyncmcp.sqs_client` calls our server.
#[tokio::test]
async fn python_client_calls_our_server() {
    let ls = aws::localstack().await;
    let client = ls.sqs_client().await;
    let requests = ls.create_queue("interop-requests").await;
    let replies = ls.create_queue("interop-py-replies").await;
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(
        SqsInbox::open(client.clone(), &requests)
            .await
            .expect("open"),
        SqsOutbox::new(client.clone()),
    )
    .wait(std::time::Duration::from_secs(1))
    .build(DemoServer::factory(Arc::new(DemoStats::default())))
    .spawn(shutdown.clone());

    let lines = run_py_client(
        ls,
        "py_client.py",
        &[
            "--server-queue-url",
            &requests,
            "--reply-queue-url",
            &replies,
        ],
    )
    .await;

    shutdown.cancel();
    server.await.expect("server");
    assert_python_client_succeeded(&lines);
}

/// Checks the lines a Python peer client prints after calling our demo server.
fn assert_python_client_succeeded(lines: &[serde_json::Value]) {
    let find = |key: &str| {
        lines
            .iter()
            .find_map(|line| line.get(key).cloned())
            .unwrap_or_else(|| panic!("no {key:?} line in {lines:?}"))
    };
    assert_eq!(
        find("tools"),
        json!(["add", "echo", "fail", "hash", "roots", "sleep"])
    );
    assert_eq!(find("echo"), json!("hello from python"));
    assert_eq!(find("add"), json!("5"));
}

/// Our client calls a Python `asyncmcp.SqsSessionManager` server.
#[tokio::test]
async fn our_client_calls_python_server() {
    let ls = aws::localstack().await;
    let client = ls.sqs_client().await;
    let requests = ls.create_queue("interop-py-requests").await;
    let replies = ls.create_queue("interop-replies").await;
    let python = spawn_py_server(ls, "py_server.py", &requests).await;

    let transport = QueueClientTransport::builder(&requests)
        .wait(std::time::Duration::from_secs(1))
        .build(
            SqsInbox::open(client.clone(), &replies)
                .await
                .expect("open"),
            SqsOutbox::new(client.clone()),
        );
    let session = ().serve(transport).await.expect("initialize with Python");
    call_python_server(&session).await;
    session.cancel().await.expect("close");
    python.stop().await;
}

/// Lists and calls the Python peer server's tools.
async fn call_python_server(session: &rmcp::service::RunningService<rmcp::RoleClient, ()>) {
    let tools = session.list_all_tools().await.expect("list tools");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo"]);
    let echoed = session
        .call_tool(call("echo", json!({"text": "hello from rust"})))
        .await
        .expect("echo");
    assert_eq!(text_of(&echoed), "hello from rust");
    let sum = session
        .call_tool(call("add", json!({"a": 2, "b": 3})))
        .await
        .expect("add");
    assert_eq!(text_of(&sum), "5");
}

/// Python's `sns_sqs_client` publishes to a request topic our server's queue
/// is subscribed to (in the SNS envelope) and names its own reply topic as
/// `client_topic_arn`; our server publishes the replies there.
#[cfg(feature = "sns")]
#[tokio::test]
async fn python_sns_client_calls_our_server() {
    let ls = aws::localstack().await;
    let sdk = ls.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let requests =
        aws::TopicQueue::create(&sqs_client, &sns_client, "interop-sns-requests", false).await;
    let replies =
        aws::TopicQueue::create(&sqs_client, &sns_client, "interop-py-replies", true).await;
    let outbox = RoutingOutbox::new()
        .with(Arc::new(SnsOutbox::new(sns_client.clone())))
        .with(Arc::new(SqsOutbox::new(sqs_client.clone())));
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(
        SqsInbox::open(sqs_client.clone(), &requests.queue)
            .await
            .expect("open"),
        outbox,
    )
    .wait(std::time::Duration::from_secs(1))
    .build(DemoServer::factory(Arc::new(DemoStats::default())))
    .spawn(shutdown.clone());

    let lines = run_py_client(
        ls,
        "py_sns_client.py",
        &[
            "--request-topic-arn",
            &requests.topic,
            "--reply-queue-url",
            &replies.queue,
            "--reply-topic-arn",
            &replies.topic,
        ],
    )
    .await;

    shutdown.cancel();
    server.await.expect("server");
    assert_python_client_succeeded(&lines);
    requests.delete(&sqs_client, &sns_client).await;
    replies.delete(&sqs_client, &sns_client).await;
}

/// Our client publishes to the request topic of a Python
/// `SnsSqsSessionManager` server and names its own reply topic in
/// `initialize`; the Python server publishes the replies there.
#[cfg(feature = "sns")]
#[tokio::test]
async fn our_client_calls_python_sns_server() {
    let ls = aws::localstack().await;
    let sdk = ls.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let requests =
        aws::TopicQueue::create(&sqs_client, &sns_client, "interop-py-sns-requests", true).await;
    let python = spawn_py_server(ls, "py_sns_server.py", &requests.queue).await;

    let transport = QueueClientTransport::builder(&requests.topic)
        .wait(std::time::Duration::from_secs(1))
        .connect_sns_sqs(&sqs_client, &sns_client, SnsReplies::OwnTopic)
        .await
        .expect("connect");
    let session = ().serve(transport).await.expect("initialize with Python");
    call_python_server(&session).await;
    session.cancel().await.expect("close");
    python.stop().await;
    requests.delete(&sqs_client, &sns_client).await;
}

/// Path of a script in `tests/interop/`, e.g. `interop_script("py_server.py")`.
fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// A running Python peer server (`tests/interop/py_*server.py`); killed when dropped.
struct PyServer {
    child: tokio::process::Child,
}

impl PyServer {
    /// Kills the server and waits for it to exit.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Starts the Python asyncmcp server `script` (in `tests/interop/`) reading
/// `request_queue_url`; returns once it prints READY (panics after 30 s). Its stderr goes
/// to the test's stderr.
async fn spawn_py_server(ls: &aws::LocalStack, script: &str, request_queue_url: &str) -> PyServer {
    let mut child = tokio::process::Command::new(py_peer_python())
        .arg(interop_script(script))
        .arg("--request-queue-url")
        .arg(request_queue_url)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {script}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "READY" {
                return Ok(true);
            }
        }
        Ok::<_, std::io::Error>(false)
    })
    .await;
    match ready {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => panic!("{script} exited before printing READY (see its stderr above)"),
        Ok(Err(e)) => panic!("reading {script} stdout: {e}"),
        Err(_) => panic!("{script} did not print READY within 30 s"),
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    PyServer { child }
}

/// Runs the Python asyncmcp client `script` (in `tests/interop/`) with `args`, e.g.
/// `py_client.py --server-queue-url URL --reply-queue-url URL`; returns its JSON lines
/// (`{"tools":[..]}`, `{"echo":..}`, `{"add":..}`). Panics with its stderr if it fails or
/// runs over 90 s.
async fn run_py_client(
    ls: &aws::LocalStack,
    script: &str,
    args: &[&str],
) -> Vec<serde_json::Value> {
    let run = tokio::process::Command::new(py_peer_python())
        .arg(interop_script(script))
        .args(args)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .unwrap_or_else(|_| panic!("{script} ran over 90 s"))
        .unwrap_or_else(|e| panic!("spawning {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{script} printed a non-JSON line {l:?}: {e}"))
        })
        .collect()
}

//! Interoperability with Python asyncmcp 0.2.1 over SQS and over SNS+SQS,
//! both ways, on LocalStack. `scripts/test.sh` installs the Python peer
//! (`ASYNCMCP_PY_PEER`).
#![cfg(feature = "sqs")]

mod common;
mod scenarios;

use std::sync::Arc;

use asyncmcp::queue::sqs::{SqsInbox, SqsOutbox};
use asyncmcp::{QueueClientConfig, QueueClientTransport, QueueServer};
#[cfg(feature = "sns")]
use asyncmcp::{
    client::SnsReplies,
    queue::RoutingOutbox,
    queue::sns::{self, SnsOutbox},
    queue::sqs,
};
use rmcp::ServiceExt;
use scenarios::demo_tools::{DemoServer, DemoStats};
use scenarios::{call, text_of};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Python's `mcp.ClientSession` over `asyncmcp.sqs_client` calls our server.
#[tokio::test]
async fn python_client_calls_our_server() {
    let ls = common::localstack().await;
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

    let lines = common::run_py_client(
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
    let ls = common::localstack().await;
    let client = ls.sqs_client().await;
    let requests = ls.create_queue("interop-py-requests").await;
    let replies = ls.create_queue("interop-replies").await;
    let python = common::spawn_py_server(ls, "py_server.py", &requests).await;

    let transport = QueueClientTransport::new(
        SqsInbox::open(client.clone(), &replies)
            .await
            .expect("open"),
        SqsOutbox::new(client.clone()),
        QueueClientConfig {
            wait: std::time::Duration::from_secs(1),
            ..QueueClientConfig::new(&requests)
        },
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
    let ls = common::localstack().await;
    let sdk = ls.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let requests =
        common::TopicQueue::create(&sqs_client, &sns_client, "interop-sns-requests", false).await;
    let replies =
        common::TopicQueue::create(&sqs_client, &sns_client, "interop-py-replies", true).await;
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

    let lines = common::run_py_client(
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
    let ls = common::localstack().await;
    let sdk = ls.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let requests =
        common::TopicQueue::create(&sqs_client, &sns_client, "interop-py-sns-requests", true).await;
    let python = common::spawn_py_server(ls, "py_sns_server.py", &requests.queue).await;

    let transport = QueueClientTransport::connect_sns_sqs(
        sqs_client.clone(),
        sns_client.clone(),
        QueueClientConfig {
            wait: std::time::Duration::from_secs(1),
            ..QueueClientConfig::new(&requests.topic)
        },
        SnsReplies::OwnTopic,
    )
    .await
    .expect("connect");
    let session = ().serve(transport).await.expect("initialize with Python");
    call_python_server(&session).await;
    session.cancel().await.expect("close");
    python.stop().await;
    requests.delete(&sqs_client, &sns_client).await;
}

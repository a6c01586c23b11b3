//! Interoperability with Python asyncmcp 0.2.1 over SQS, both ways, on
//! LocalStack. `scripts/test.sh` installs the Python peer (`ASYNCMCP_PY_PEER`).
#![cfg(feature = "sqs")]

mod common;
mod scenarios;

use std::sync::Arc;

use asyncmcp::queue::sqs::{SqsInbox, SqsOutbox};
use asyncmcp::{QueueClientConfig, QueueClientTransport, QueueServer};
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

    let lines = common::run_py_client(ls, &requests, &replies).await;

    shutdown.cancel();
    server.await.expect("server");
    let find = |key: &str| {
        lines
            .iter()
            .find_map(|line| line.get(key).cloned())
            .unwrap_or_else(|| panic!("no {key:?} line in {lines:?}"))
    };
    assert_eq!(
        find("tools"),
        json!(["add", "echo", "fail", "hash", "sleep"])
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
    let python = common::spawn_py_server(ls, &requests).await;

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
    session.cancel().await.expect("close");
    python.stop().await;
}

//! `send_retry`: the broker stays unreachable for longer than the client's
//! `send_retry`.

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::{QueueClientTransport, QueueServer};
use asyncmcp_testkit::aws::{self, proxy::FaultProxy};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::unique_name;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use tokio_util::sync::CancellationToken;

use crate::sends::{self, RecordingOutbox};

/// A client with a 2 s `send_retry` whose line to LocalStack is cut before
/// a call: the call fails with the send error once the client gives up,
/// after retrying for about `send_retry` (the client stops when its next
/// pause would end past it, so at least half of it), neither at the first
/// failure nor never.
pub(crate) async fn send_retry() {
    const SEND_RETRY: Duration = Duration::from_secs(2);
    let ls = aws::localstack().await;
    let direct = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions::default();
    let requests = sqs::create_queue(&direct, &unique_name("send-retry"), &options)
        .await
        .expect("queue");
    let replies = sqs::create_queue(&direct, &unique_name("send-retry-replies"), &options)
        .await
        .expect("queue");
    // The server reaches LocalStack directly: only the client is cut off.
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(
        SqsInbox::open(direct.clone(), &requests)
            .await
            .expect("open"),
        SqsOutbox::new(direct.clone()),
    )
    .wait(Duration::from_secs(1))
    .build(DemoServer::factory(Arc::new(DemoStats::default())))
    .spawn(shutdown.clone());

    let proxy = FaultProxy::in_front_of(&ls.endpoint)
        .await
        .expect("start the fault proxy");
    // Without the SDK's own retries (up to 3 attempts with a jittered
    // backoff of up to 3 s) each attempt fails as soon as the proxy drops
    // its connection, so the time to the error is the client's `send_retry`
    // alone.
    let sdk = aws::sdk_config_for(&proxy.endpoint())
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let client = sqs::client(&sdk);
    let outbox = RecordingOutbox::new(SqsOutbox::new(client.clone()));
    let transport = QueueClientTransport::builder(&requests)
        .wait(Duration::from_secs(1))
        .send_retry(SEND_RETRY)
        .build(
            SqsInbox::open(client.clone(), &replies)
                .await
                .expect("open"),
            outbox.clone(),
        );
    let session = ().serve(transport).await.expect("initialize");
    let echo = |text: &str| {
        CallToolRequestParams::new("echo").with_arguments(
            serde_json::json!({ "text": text })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    };
    let before = session.peer().call_tool(echo("before the cut")).await;

    proxy.cut();
    let started = tokio::time::Instant::now();
    let during = tokio::time::timeout(
        SEND_RETRY + Duration::from_secs(30),
        session.peer().call_tool(echo("during the cut")),
    )
    .await;
    let took = started.elapsed();
    proxy.restore();

    let _ = session.cancel().await;
    shutdown.cancel();
    let _ = server.await;
    let _ = sqs::delete_queue(&direct, &requests).await;
    let _ = sqs::delete_queue(&direct, &replies).await;

    let attempts = sends::attempts_of(&outbox.attempts(), "during the cut");
    let failed = attempts.iter().filter(|a| a.error.is_some()).count();
    let last_error = attempts
        .last()
        .and_then(|a| a.error.clone())
        .unwrap_or_default();
    let error = match &during {
        Ok(Err(ServiceError::TransportSend(error))) => error.to_string(),
        Ok(other) => format!("not a send error: {other:?}"),
        Err(_) => format!(
            "no outcome within {:?}",
            SEND_RETRY + Duration::from_secs(30)
        ),
    };
    eprintln!(
        "send_retry: line cut, send_retry {:?}: the call failed after {:.2} s and {} attempts, {failed} failed: {error}",
        SEND_RETRY,
        took.as_secs_f64(),
        attempts.len()
    );
    assert!(before.is_ok(), "the call before the cut: {before:?}");
    assert!(
        matches!(&during, Ok(Err(ServiceError::TransportSend(_)))),
        "the call during the cut fails with a send error: {error}"
    );
    assert!(
        !last_error.is_empty() && error.contains(&last_error),
        "the call's error is the last send attempt's ({last_error:?}): {error}"
    );
    assert_eq!(failed, attempts.len(), "no attempt went out");
    assert!(failed > 1, "the failed send was retried: {attempts:?}");
    assert!(
        took >= SEND_RETRY / 2 && took <= SEND_RETRY + Duration::from_secs(5),
        "the call failed after {took:?}, not about send_retry ({SEND_RETRY:?})"
    );
}

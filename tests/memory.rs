//! The Inbox/Outbox contract and the end-to-end scenarios on the in-process
//! broker (fast, no LocalStack), and what only it does.

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::MemoryBroker;
use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::{Inbox, Outbox};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::support::{call, text_of};
use asyncmcp_testkit::{QueueSpec, TestBroker, eventually, unique_name};

/// A fresh in-process broker per test.
struct Memory(MemoryBroker);

impl Memory {
    fn new() -> Self {
        Self(MemoryBroker::new())
    }
}

#[async_trait]
impl TestBroker for Memory {
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
        let name = unique_name(prefix);
        let mut options = MemoryQueueOptions::default();
        if let Some(timeout) = spec.visibility_timeout {
            options.visibility_timeout = timeout;
        }
        if let Some(bytes) = spec.max_message_size {
            options.max_message_size = bytes;
        }
        self.0.create_queue(&name, options)
    }
    async fn inbox(&self, address: &str) -> Arc<dyn Inbox> {
        Arc::new(self.0.inbox(address).expect("memory queue exists"))
    }
    fn outbox(&self) -> Arc<dyn Outbox> {
        Arc::new(self.0.outbox())
    }
    async fn delete_queue(&self, address: &str) {
        self.0.delete_queue(address);
    }
    async fn depth(&self, address: &str) -> usize {
        let (visible, in_flight) = self.0.depth(address);
        visible + in_flight
    }
}

asyncmcp_testkit::broker_tests!(Memory::new());

/// The contract again through the layers every inbox and client outbox get
/// (SNS envelope unwrapping, send retry): what they let through passes
/// unchanged. (The signing layers change what they pass, a signature more;
/// the scenarios run them end to end.)
mod through_layers {
    use asyncmcp::queue::layer::{RetryLayer, UnwrapEnvelopeLayer};
    use asyncmcp_testkit::Layered;

    use super::Memory;

    asyncmcp_testkit::contract_tests!(Layered::new(
        Memory::new(),
        UnwrapEnvelopeLayer,
        RetryLayer::new(std::time::Duration::from_secs(5)),
    ));
}

/// `QueueClientTransport::memory` creates its reply queue on connect and
/// deletes it on close.
#[tokio::test]
async fn memory_client_owns_its_reply_queue() {
    use rmcp::ServiceExt;
    let broker = MemoryBroker::new();
    let requests = broker.create_queue("requests", MemoryQueueOptions::default());
    let transport = asyncmcp::QueueClientTransport::memory(&broker, &requests).expect("transport");
    let reply_queue = transport.reply_address().to_owned();
    assert!(
        broker.inbox(&reply_queue).is_ok(),
        "reply queue exists while open"
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server =
        asyncmcp::QueueServer::builder(broker.inbox(&requests).expect("inbox"), broker.outbox())
            .wait(std::time::Duration::from_secs(1))
            .build(DemoServer::factory(Default::default()))
            .spawn(shutdown.clone());
    let client = ().serve(transport).await.expect("connect");
    client.cancel().await.expect("close");
    assert!(
        broker.inbox(&reply_queue).is_err(),
        "reply queue deleted on close"
    );
    shutdown.cancel();
    server.await.expect("server");
}

/// An inbox that counts visibility extensions.
struct CountingInbox {
    inner: Arc<dyn Inbox>,
    extends: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl Inbox for CountingInbox {
    fn info(&self) -> &asyncmcp::queue::QueueInfo {
        self.inner.info()
    }
    async fn receive(
        &self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<asyncmcp::queue::Delivery>, asyncmcp::queue::QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn ack(
        &self,
        receipt: &asyncmcp::queue::Receipt,
    ) -> Result<(), asyncmcp::queue::QueueError> {
        self.inner.ack(receipt).await
    }
    async fn extend(
        &self,
        receipt: &asyncmcp::queue::Receipt,
        visibility: std::time::Duration,
    ) -> Result<(), asyncmcp::queue::QueueError> {
        self.extends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.extend(receipt, visibility).await
    }
    async fn release(
        &self,
        receipt: &asyncmcp::queue::Receipt,
    ) -> Result<(), asyncmcp::queue::QueueError> {
        self.inner.release(receipt).await
    }
}

/// The heartbeat extends a long call's visibility while it runs, and stops
/// the moment the call ends, whether it finished or was cancelled.
#[tokio::test]
async fn heartbeat_stops_when_the_call_ends() {
    use rmcp::ServiceExt;
    use rmcp::model::{ClientRequest, Request};
    use rmcp::service::PeerRequestOptions;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let broker = MemoryBroker::new();
    let requests = broker.create_queue(
        "requests",
        MemoryQueueOptions::default().with_visibility_timeout(Duration::from_secs(1)),
    );
    let extends = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let inbox = CountingInbox {
        inner: Arc::new(broker.inbox(&requests).expect("inbox")),
        extends: extends.clone(),
    };
    let stats = Arc::new(DemoStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = asyncmcp::QueueServer::builder(inbox, broker.outbox())
        .wait(Duration::from_secs(1))
        .build(DemoServer::factory(stats.clone()))
        .spawn(shutdown.clone());
    let transport = asyncmcp::QueueClientTransport::memory(&broker, &requests).expect("client");
    let client = ().serve(transport).await.expect("connect");
    let settled = || async {
        let before = extends.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (before, extends.load(Ordering::Relaxed))
    };

    // A 2.2 s call on a 1 s visibility: extended every 0.5 s while it runs.
    let result = client
        .call_tool(call("sleep", serde_json::json!({"ms": 2200})))
        .await
        .expect("long call");
    assert_eq!(text_of(&result), "slept 2200 ms");
    let (finished, later) = settled().await;
    assert!(finished >= 3, "extended while running: {finished}");
    assert_eq!(later, finished, "no extension after the call finished");

    // A cancelled call: extensions stop with it.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call(
                "sleep",
                serde_json::json!({"ms": 60_000}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    handle.cancel(Some("test".into())).await.expect("cancel");
    let cancelled = eventually(Duration::from_secs(5), || {
        stats.sleeps_cancelled.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(cancelled, "the handler saw the cancellation");
    let (stopped, later) = settled().await;
    assert!(
        stopped > finished,
        "the cancelled call was extended while it ran"
    );
    assert_eq!(later, stopped, "no extension after the cancellation");

    client.cancel().await.expect("close");
    shutdown.cancel();
    server.await.expect("server");
}

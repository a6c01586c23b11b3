//! The end-to-end scenarios on the in-process broker: fast, no LocalStack.

mod scenarios;

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::MemoryBroker;
use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::{Inbox, Outbox};
use scenarios::{QueueSpec, TestBroker};

struct Memory(MemoryBroker);

impl Memory {
    fn new() -> Self {
        Self(MemoryBroker::new())
    }
}

#[async_trait]
impl TestBroker for Memory {
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let defaults = MemoryQueueOptions::default();
        let options = MemoryQueueOptions {
            visibility_timeout: spec
                .visibility_timeout
                .unwrap_or(defaults.visibility_timeout),
            max_message_size: spec.max_message_size.unwrap_or(defaults.max_message_size),
            redrive: None,
        };
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

scenarios::all_scenarios!(Memory::new());

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
            .build(scenarios::demo_tools::DemoServer::factory(
                Default::default(),
            ))
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

//! The end-to-end scenarios on the in-process broker: fast, no LocalStack.

mod scenarios;

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::MemoryBroker;
use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::{Inbox, Outbox};
use scenarios::TestBroker;

struct Memory(MemoryBroker);

impl Memory {
    fn new() -> Self {
        Self(MemoryBroker::new())
    }
}

#[async_trait]
impl TestBroker for Memory {
    async fn create_queue(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        self.0.create_queue(&name, MemoryQueueOptions::default())
    }
    async fn create_small_queue(&self, prefix: &str, max_size: usize) -> String {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let options = MemoryQueueOptions {
            max_message_size: max_size,
            ..MemoryQueueOptions::default()
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

#[tokio::test]
async fn list_and_call() {
    scenarios::list_and_call(&Memory::new()).await;
}

#[tokio::test]
async fn is_error_result_vs_jsonrpc_error() {
    scenarios::is_error_result_vs_jsonrpc_error(&Memory::new()).await;
}

#[tokio::test]
async fn progress_is_delivered() {
    scenarios::progress_is_delivered(&Memory::new()).await;
}

#[tokio::test]
async fn cancellation_stops_the_handler() {
    scenarios::cancellation_stops_the_handler(&Memory::new()).await;
}

#[tokio::test]
async fn timeouts() {
    scenarios::timeouts(&Memory::new()).await;
}

#[tokio::test]
async fn concurrency() {
    scenarios::concurrency(&Memory::new()).await;
}

#[tokio::test]
async fn protocol_versions() {
    scenarios::protocol_versions(&Memory::new()).await;
}

#[tokio::test]
async fn bad_input() {
    scenarios::bad_input(&Memory::new()).await;
}

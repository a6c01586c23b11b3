//! The task store contract on the in-memory store: every handle is a clone
//! of one `MemoryTaskStore` (the replicas of one process).

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::tasks::{MemoryTaskStore, TaskStore};
use asyncmcp_testkit::task_store_contract::TestTaskStore;

struct Memory(MemoryTaskStore);

#[async_trait]
impl TestTaskStore for Memory {
    async fn handle(&self) -> Arc<dyn TaskStore> {
        Arc::new(self.0.clone())
    }
}

asyncmcp_testkit::task_store_contract_tests!(Memory(MemoryTaskStore::new()));

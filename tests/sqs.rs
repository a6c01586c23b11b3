//! The Inbox/Outbox contract and the end-to-end scenarios on Amazon SQS, as
//! emulated by LocalStack, and FIFO queues (`fifo/`).
//!
//! Needs LocalStack: `scripts/test.sh` starts it (see `asyncmcp_testkit::aws`).
#![cfg(feature = "sqs")]

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::queue::sqs::{self, Client, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox};
use asyncmcp_testkit::{QueueSpec, TestBroker, aws, unique_name};

/// SQS queues on LocalStack, one client per test.
struct Sqs {
    client: Client,
    outbox: Arc<SqsOutbox>,
}

impl Sqs {
    async fn new() -> Self {
        let client = aws::localstack().await.sqs_client().await;
        Self {
            outbox: Arc::new(SqsOutbox::new(client.clone())),
            client,
        }
    }

    async fn create(&self, prefix: &str, options: SqsQueueOptions) -> String {
        let name = unique_name(prefix);
        sqs::create_queue(&self.client, &name, &options)
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e}"))
    }
}

#[async_trait]
impl TestBroker for Sqs {
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
        let mut options = SqsQueueOptions::default();
        options.visibility_timeout = spec.visibility_timeout;
        options.max_message_size = spec.max_message_size;
        self.create(prefix, options).await
    }
    async fn inbox(&self, address: &str) -> Arc<dyn Inbox> {
        Arc::new(
            SqsInbox::open(self.client.clone(), address)
                .await
                .expect("open queue"),
        )
    }
    fn outbox(&self) -> Arc<dyn Outbox> {
        self.outbox.clone()
    }
    async fn delete_queue(&self, address: &str) {
        let _ = sqs::delete_queue(&self.client, address).await;
    }
    async fn depth(&self, address: &str) -> usize {
        aws::queue_depth(&self.client, address).await
    }
}

asyncmcp_testkit::broker_tests!(Sqs::new().await);

mod fifo;

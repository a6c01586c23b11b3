//! The end-to-end scenarios on Amazon SQS, as emulated by LocalStack.
//!
//! Needs LocalStack: `scripts/test.sh` starts it (see `tests/common`).
#![cfg(feature = "sqs")]

mod common;
mod scenarios;

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::queue::sqs::{self, Client, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox};
use scenarios::{QueueSpec, TestBroker};

struct Sqs {
    client: Client,
    outbox: Arc<SqsOutbox>,
}

impl Sqs {
    async fn new() -> Self {
        let client = common::localstack().await.sqs_client().await;
        Self {
            outbox: Arc::new(SqsOutbox::new(client.clone())),
            client,
        }
    }

    async fn create(&self, prefix: &str, options: SqsQueueOptions) -> String {
        let name = common::unique_name(prefix);
        sqs::create_queue(&self.client, &name, &options)
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e}"))
    }
}

#[async_trait]
impl TestBroker for Sqs {
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
        let options = SqsQueueOptions {
            visibility_timeout: spec.visibility_timeout,
            max_message_size: spec.max_message_size,
            ..SqsQueueOptions::default()
        };
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
        common::queue_depth(&self.client, address).await
    }
}

scenarios::all_scenarios!(Sqs::new().await);

/// FIFO request and reply queues: the client and the server set a message
/// group and a deduplication id on every message (FIFO queues refuse a send
/// without them), and calls work as on standard queues.
#[tokio::test]
async fn fifo_queues_work_end_to_end() {
    use asyncmcp::{QueueClientConfig, QueueClientTransport, QueueServer};
    use rmcp::ServiceExt;
    use serde_json::json;

    let broker = Sqs::new().await;
    let fifo = SqsQueueOptions {
        fifo: true,
        ..SqsQueueOptions::default()
    };
    let name = |prefix: &str| format!("{}.fifo", common::unique_name(prefix).replace('-', "_"));
    let requests = sqs::create_queue(&broker.client, &name("requests"), &fifo)
        .await
        .expect("FIFO request queue");
    let replies = sqs::create_queue(&broker.client, &name("replies"), &fifo)
        .await
        .expect("FIFO reply queue");
    let stats = Arc::new(scenarios::demo_tools::DemoStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = QueueServer::builder(broker.inbox(&requests).await, broker.outbox())
        .wait(std::time::Duration::from_secs(1))
        .build(scenarios::demo_tools::DemoServer::factory(stats))
        .spawn(shutdown.clone());
    let transport = QueueClientTransport::new(
        broker.inbox(&replies).await,
        broker.outbox(),
        QueueClientConfig {
            wait: std::time::Duration::from_secs(1),
            ..QueueClientConfig::new(&requests)
        },
    );
    let client = ().serve(transport).await.expect("initialize");
    let sum = client
        .call_tool(scenarios::call("add", json!({"a": 2, "b": 3})))
        .await
        .expect("add");
    assert_eq!(scenarios::text_of(&sum), "5");
    let slept = client
        .call_tool(scenarios::call("sleep", json!({"ms": 200})))
        .await
        .expect("sleep");
    assert_eq!(scenarios::text_of(&slept), "slept 200 ms");
    client.cancel().await.expect("close");
    shutdown.cancel();
    server.await.expect("server");
    broker.delete_queue(&requests).await;
    broker.delete_queue(&replies).await;
}

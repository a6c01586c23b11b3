//! The S3 offload layer (feature `offload`) against LocalStack's SQS, SNS
//! and S3: calls whose arguments and results are far over the queues'
//! limits, end to end over SQS (1 MiB and 256 KiB queues) and SNS+SQS, no
//! object left behind, and what a payload that is gone, or a pointer to
//! another bucket, gives the caller.
//!
//! Needs LocalStack with S3: `scripts/test.sh` starts it (see
//! `asyncmcp_testkit::aws`).
#![cfg(feature = "offload")]

mod batch;
mod interop;
mod layer;
mod refused;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use asyncmcp::queue::layer::offload::pointer::{PAYLOAD_SIZE_ATTRIBUTE, PayloadPointer};
use asyncmcp::queue::layer::{Layer, OffloadLayer, PayloadRefused, S3Offload};
use asyncmcp::queue::memory::{MemoryBroker, MemoryQueueOptions};
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox, QueueError, QueueMessage, RoutingOutbox};
use asyncmcp::wire::signing::SigningKeys;
use asyncmcp::{QueueClientTransport, QueueServer};
use asyncmcp_testkit::aws::s3::TestBucket;
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::support::{call, text_of};
use asyncmcp_testkit::{aws, next_reply, unique_name};
use aws_sdk_s3::primitives::ByteStream;
use rmcp::{ServiceError, ServiceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;

/// A text of `len` bytes that is not one byte repeated.
fn text(len: usize) -> String {
    "0123456789abcdef".repeat(len / 16 + 1)[..len].to_owned()
}

fn settings(bucket: &TestBucket) -> S3Offload {
    S3Offload::new(bucket.client.clone(), &bucket.name).prefix("mcp/")
}

/// Where requests and replies go, and the queues they arrive in.
struct Route {
    /// Where the client sends requests (a queue URL or a topic ARN).
    requests: String,
    /// The queue the server reads.
    request_queue: String,
    /// Where the server sends replies.
    replies: String,
    /// The queue the client reads.
    reply_queue: String,
}

struct Setup {
    sqs: sqs::Client,
    #[cfg(feature = "sns")]
    sns: asyncmcp::queue::sns::Client,
    outbox: Arc<dyn Outbox>,
}

impl Setup {
    async fn new() -> Self {
        let sdk = aws::localstack().await.sdk_config().await;
        let sqs = sqs::client(&sdk);
        let outbox = RoutingOutbox::new();
        #[cfg(feature = "sns")]
        let sns = asyncmcp::queue::sns::client(&sdk);
        #[cfg(feature = "sns")]
        let outbox = outbox.with(Arc::new(asyncmcp::queue::sns::SnsOutbox::new(sns.clone())));
        let outbox = outbox.with(Arc::new(SqsOutbox::new(sqs.clone())));
        Self {
            sqs,
            #[cfg(feature = "sns")]
            sns,
            outbox: Arc::new(outbox),
        }
    }

    async fn queue(&self, prefix: &str, max_message_size: Option<usize>) -> String {
        let mut options = SqsQueueOptions::default();
        options.max_message_size = max_message_size;
        let name = unique_name(prefix);
        sqs::create_queue(&self.sqs, &name, &options)
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e}"))
    }

    async fn sqs_route(&self, max_message_size: Option<usize>) -> Route {
        let requests = self.queue("offload-requests", max_message_size).await;
        let replies = self.queue("offload-replies", max_message_size).await;
        Route {
            request_queue: requests.clone(),
            requests,
            reply_queue: replies.clone(),
            replies,
        }
    }

    async fn inbox(&self, queue: &str) -> Arc<dyn Inbox> {
        Arc::new(
            SqsInbox::open(self.sqs.clone(), queue)
                .await
                .expect("open queue"),
        )
    }

    /// Starts a demo server on `route`, customised.
    async fn server(
        &self,
        route: &Route,
        customise: impl FnOnce(
            asyncmcp::server::QueueServerBuilder,
        ) -> asyncmcp::server::QueueServerBuilder,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let builder =
            QueueServer::builder(self.inbox(&route.request_queue).await, self.outbox.clone())
                .wait(Duration::from_secs(1))
                .shutdown_grace(Duration::from_secs(2));
        let server = customise(builder)
            .build(DemoServer::factory(Arc::new(DemoStats::default())))
            .spawn(shutdown.clone());
        (shutdown, server)
    }

    /// A client transport on `route`, customised.
    async fn transport(
        &self,
        route: &Route,
        customise: impl FnOnce(
            asyncmcp::client::QueueClientBuilder,
        ) -> asyncmcp::client::QueueClientBuilder,
    ) -> QueueClientTransport {
        let builder = QueueClientTransport::builder(&route.requests)
            .wait(Duration::from_secs(1))
            .reply_address(&route.replies);
        customise(builder).build(self.inbox(&route.reply_queue).await, self.outbox.clone())
    }

    async fn delete(&self, route: &Route) {
        let _ = sqs::delete_queue(&self.sqs, &route.request_queue).await;
        let _ = sqs::delete_queue(&self.sqs, &route.reply_queue).await;
    }
}

/// Echoes texts of `sizes` bytes through a server and a client that both
/// offload to `bucket`, and checks the bucket is empty after.
async fn echo_large(
    setup: &Setup,
    route: &Route,
    bucket: &TestBucket,
    sizes: &[usize],
    signed: bool,
) {
    let keys_ = SigningKeys::new(vec![7; 32], None).expect("32-byte key");
    let (shutdown, server) = setup
        .server(route, |b| {
            let b = b.offload(settings(bucket));
            if signed {
                b.signing(keys_.clone(), true)
            } else {
                b
            }
        })
        .await;
    let transport = setup
        .transport(route, |b| {
            let b = b.offload(settings(bucket));
            if signed {
                b.signing(keys_.clone(), true)
            } else {
                b
            }
        })
        .await;
    let client = ().serve(transport).await.expect("client connects");
    for &size in sizes {
        let sent = text(size);
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            client.call_tool(call("echo", json!({ "text": sent }))),
        )
        .await
        .expect("answered in time")
        .expect("call succeeds");
        let got = text_of(&result);
        assert_eq!(got.len(), size);
        assert!(got == sent, "the echoed text differs");
    }
    client.cancel().await.expect("client closes");
    shutdown.cancel();
    server.await.expect("server task");
    assert_eq!(
        bucket.drained().await,
        Vec::<String>::new(),
        "objects left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_and_three_mib_over_a_1_mib_sqs_queue_leave_no_object() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-sqs").await;
    let route = setup.sqs_route(None).await;
    echo_large(&setup, &route, &bucket, &[3 * MIB, 5 * MIB, 100], false).await;
    setup.delete(&route).await;
    bucket.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_calls_over_a_256_kib_sqs_queue() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-sqs-256").await;
    let route = setup.sqs_route(Some(262_144)).await;
    // Just over the queue's limit, and far over.
    echo_large(&setup, &route, &bucket, &[300 * 1024, 3 * MIB], false).await;
    setup.delete(&route).await;
    bucket.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_large_calls_verify() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-signed").await;
    let route = setup.sqs_route(None).await;
    echo_large(&setup, &route, &bucket, &[3 * MIB], true).await;
    setup.delete(&route).await;
    bucket.delete().await;
}

#[cfg(feature = "sns")]
#[tokio::test(flavor = "multi_thread")]
async fn five_and_three_mib_over_sns_and_sqs_leave_no_object() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-sns").await;
    // Requests in the SNS envelope, replies raw.
    let requests = aws::TopicQueue::create(&setup.sqs, &setup.sns, "offload-req", false).await;
    let replies = aws::TopicQueue::create(&setup.sqs, &setup.sns, "offload-rep", true).await;
    let route = Route {
        requests: requests.topic.clone(),
        request_queue: requests.queue.clone(),
        replies: replies.topic.clone(),
        reply_queue: replies.queue.clone(),
    };
    echo_large(&setup, &route, &bucket, &[3 * MIB, 5 * MIB], false).await;
    requests.delete(&setup.sqs, &setup.sns).await;
    replies.delete(&setup.sqs, &setup.sns).await;
    bucket.delete().await;
}

//! The S3 offload layer (feature `offload`) against LocalStack's SQS, SNS
//! and S3: calls whose arguments and results are far over the queues'
//! limits, end to end over SQS (1 MiB and 256 KiB queues) and SNS+SQS, no
//! object left behind, and what a payload that is gone, or a pointer to
//! another bucket, gives the caller.
//!
//! Needs LocalStack with S3: `scripts/test.sh` starts it (see
//! `asyncmcp_testkit::aws`).
#![cfg(feature = "offload")]

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

/// The keys in `bucket`.
async fn keys(bucket: &TestBucket) -> Vec<String> {
    let listed = bucket
        .client
        .list_objects_v2()
        .bucket(&bucket.name)
        .send()
        .await
        .expect("ListObjectsV2");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Waits (up to 20 s) until `bucket` holds no object; returns what is left.
async fn drained(bucket: &TestBucket) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = keys(bucket).await;
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn settings(bucket: &TestBucket) -> S3Offload {
    S3Offload::new(bucket.client.clone(), &bucket.name).prefix("mcp/")
}

/// An outbox (below the offload layer) that deletes the object a pointer
/// names before sending: the payload is gone when the message arrives.
struct Vanish {
    inner: Arc<dyn Outbox>,
    s3: aws_sdk_s3::Client,
}

struct VanishLayer(aws_sdk_s3::Client);

impl Layer<Arc<dyn Outbox>> for VanishLayer {
    type Service = Vanish;
    fn layer(&self, inner: Arc<dyn Outbox>) -> Vanish {
        Vanish {
            inner,
            s3: self.0.clone(),
        }
    }
}

#[async_trait]
impl Outbox for Vanish {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }
    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        if let Some(Ok(pointer)) = PayloadPointer::parse(&message.body) {
            self.s3
                .delete_object()
                .bucket(&pointer.bucket)
                .key(&pointer.key)
                .send()
                .await
                .expect("DeleteObject");
        }
        self.inner.send(address, message).await
    }
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
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
        drained(bucket).await,
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

/// The error a call failed with, as text.
fn error_text(error: ServiceError) -> String {
    match error {
        ServiceError::McpError(data) => data.message.to_string(),
        other => panic!("expected an MCP error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_payload_is_gone_fails_the_call_clearly() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-gone-req").await;
    let route = setup.sqs_route(None).await;
    let (shutdown, server) = setup.server(&route, |b| b.offload(settings(&bucket))).await;
    let transport = setup
        .transport(&route, |b| {
            b.outbox_layer(VanishLayer(bucket.client.clone()))
                .offload(settings(&bucket))
        })
        .await;
    // Initialize is small: it is not offloaded, and passes.
    let client = ().serve(transport).await.expect("client connects");
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        client.call_tool(call("echo", json!({ "text": text(2 * MIB) }))),
    )
    .await
    .expect("answered in time")
    .expect_err("the call fails");
    let message = error_text(error);
    assert!(
        message.contains(&format!("s3://{}/mcp/", bucket.name)) && message.contains("is gone"),
        "{message}"
    );
    // The client still works.
    let small = client
        .call_tool(call("echo", json!({ "text": "still here" })))
        .await
        .expect("a small call succeeds");
    assert_eq!(text_of(&small), "still here");
    client.cancel().await.expect("client closes");
    shutdown.cancel();
    server.await.expect("server task");
    setup.delete(&route).await;
    bucket.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_whose_payload_is_gone_fails_the_call_clearly() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-gone-rep").await;
    let route = setup.sqs_route(None).await;
    let (shutdown, server) = setup
        .server(&route, |b| {
            b.outbox_layer(VanishLayer(bucket.client.clone()))
                .offload(settings(&bucket))
        })
        .await;
    let transport = setup
        .transport(&route, |b| b.offload(settings(&bucket)))
        .await;
    let client = ().serve(transport).await.expect("client connects");
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        client.call_tool(call("echo", json!({ "text": text(2 * MIB) }))),
    )
    .await
    .expect("answered in time")
    .expect_err("the call fails");
    let message = error_text(error);
    assert!(
        message.contains(&format!("s3://{}/mcp/", bucket.name)) && message.contains("is gone"),
        "{message}"
    );
    client.cancel().await.expect("client closes");
    shutdown.cancel();
    server.await.expect("server task");
    assert_eq!(
        drained(&bucket).await,
        Vec::<String>::new(),
        "objects left behind"
    );
    setup.delete(&route).await;
    bucket.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pointer_to_another_bucket_is_refused_and_its_object_untouched() {
    let setup = Setup::new().await;
    let ours = TestBucket::create("offload-ours").await;
    let theirs = TestBucket::create("offload-theirs").await;
    let route = setup.sqs_route(None).await;
    let (shutdown, server) = setup.server(&route, |b| b.offload(settings(&ours))).await;
    // A well-formed request, put where a forger wants us to read it.
    let request = json!({
        "jsonrpc": "2.0", "id": 41, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "read me"}}
    });
    theirs
        .client
        .put_object()
        .bucket(&theirs.name)
        .key("mcp/secret")
        .body(ByteStream::from(request.to_string().into_bytes()))
        .send()
        .await
        .expect("PutObject");
    let headers = asyncmcp::wire::Headers {
        reply_to: Some(route.reply_queue.clone()),
        ..Default::default()
    };
    let mut message = asyncmcp::wire::encode(&request, &headers).expect("encodes");
    message.body = PayloadPointer {
        bucket: theirs.name.clone(),
        key: "mcp/secret".to_owned(),
    }
    .to_body();
    message.attributes.insert(
        PAYLOAD_SIZE_ATTRIBUTE.to_owned(),
        asyncmcp::queue::AttributeValue::Number("10".to_owned()),
    );
    setup
        .outbox
        .send(&route.request_queue, message)
        .await
        .expect("sent");
    let replies = setup.inbox(&route.reply_queue).await;
    let (reply, _) = next_reply(replies.as_ref(), Duration::from_secs(20))
        .await
        .expect("an error reply");
    assert_eq!(reply["id"], 41, "{reply}");
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("s3://{}/mcp/secret", theirs.name)) && text.contains("not accepted"),
        "{reply}"
    );
    assert!(!reply.to_string().contains("read me"), "{reply}");
    // Still there: never deleted.
    assert_eq!(keys(&theirs).await, ["mcp/secret"]);
    shutdown.cancel();
    server.await.expect("server task");
    setup.delete(&route).await;
    ours.delete().await;
    theirs.delete().await;
}

/// The layer alone, on the memory broker: the body comes back, the size
/// attribute goes, and the object stays until the delivery is acked (not
/// released).
#[tokio::test(flavor = "multi_thread")]
async fn the_object_lives_until_the_delivery_is_acked() {
    let bucket = TestBucket::create("offload-layer").await;
    let broker = MemoryBroker::new();
    let queue = broker.create_queue("q", MemoryQueueOptions::default());
    let layer = OffloadLayer::new(settings(&bucket).threshold(1000));
    let outbox = layer.layer(Arc::new(broker.outbox()) as Arc<dyn Outbox>);
    let inbox = layer.layer(Arc::new(broker.inbox(&queue).expect("queue")) as Arc<dyn Inbox>);
    let body = text(5000);
    outbox
        .send(
            &queue,
            QueueMessage::new(body.clone()).with_string("Kept", "yes"),
        )
        .await
        .expect("sent");
    outbox
        .send(&queue, QueueMessage::new("small"))
        .await
        .expect("sent");
    assert_eq!(
        keys(&bucket).await.len(),
        1,
        "only the large body is offloaded"
    );
    let mut received = inbox.receive(10, Duration::ZERO).await.expect("received");
    received.sort_by_key(|d| d.message.body.len());
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].message.body, "small");
    let large = &received[1];
    assert!(large.refused.is_none());
    assert!(large.message.body == body);
    assert_eq!(large.message.attribute("Kept"), Some("yes"));
    assert_eq!(large.message.attribute(PAYLOAD_SIZE_ATTRIBUTE), None);
    inbox.release(&large.receipt).await.expect("released");
    assert_eq!(keys(&bucket).await.len(), 1, "release keeps the object");
    let again = inbox.receive(10, Duration::ZERO).await.expect("received");
    assert_eq!(again.len(), 1);
    inbox.ack(&again[0].receipt).await.expect("acked");
    assert_eq!(keys(&bucket).await, Vec::<String>::new(), "ack deletes it");
    inbox.ack(&received[0].receipt).await.expect("acked");
    bucket.delete().await;
}

/// Objects too large, not UTF-8, or missing are refused, each naming the
/// object; none is deleted by settling the refused delivery.
#[tokio::test(flavor = "multi_thread")]
async fn bad_objects_are_refused_naming_them() {
    let bucket = TestBucket::create("offload-bad").await;
    let put = |key: &'static str, bytes: Vec<u8>| {
        let bucket = bucket.clone();
        async move {
            bucket
                .client
                .put_object()
                .bucket(&bucket.name)
                .key(key)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .expect("PutObject");
        }
    };
    put("mcp/big", vec![b'a'; 2000]).await;
    put("mcp/binary", vec![0xff, 0xfe, 0x00]).await;
    let broker = MemoryBroker::new();
    let queue = broker.create_queue("q", MemoryQueueOptions::default());
    let layer = OffloadLayer::new(settings(&bucket).max_payload(1000));
    let inbox = layer.layer(Arc::new(broker.inbox(&queue).expect("queue")) as Arc<dyn Inbox>);
    for key in ["mcp/big", "mcp/binary", "mcp/missing", "other/prefix"] {
        let pointer = PayloadPointer {
            bucket: bucket.name.clone(),
            key: key.to_owned(),
        };
        broker
            .outbox()
            .send(&queue, QueueMessage::new(pointer.to_body()))
            .await
            .expect("sent");
    }
    broker
        .outbox()
        .send(
            &queue,
            QueueMessage::new(r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{}]"#),
        )
        .await
        .expect("sent");
    let received = inbox.receive(10, Duration::ZERO).await.expect("received");
    assert_eq!(received.len(), 5);
    let mut reasons = Vec::new();
    for delivery in &received {
        let refused = delivery.refused.as_ref().expect("refused");
        let reason = refused
            .downcast_ref::<PayloadRefused>()
            .expect("an offload refusal")
            .clone();
        reasons.push(reason);
        inbox.ack(&delivery.receipt).await.expect("acked");
    }
    let url = |key: &str| format!("s3://{}/{key}", bucket.name);
    assert!(reasons.contains(&PayloadRefused::TooLarge {
        url: url("mcp/big"),
        size: 2000,
        max: 1000
    }));
    assert!(reasons.contains(&PayloadRefused::NotUtf8(url("mcp/binary"))));
    assert!(reasons.contains(&PayloadRefused::Missing(url("mcp/missing"))));
    assert!(reasons.contains(&PayloadRefused::NotAccepted(url("other/prefix"))));
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, PayloadRefused::Malformed(_)))
    );
    let mut left = keys(&bucket).await;
    left.sort();
    assert_eq!(
        left,
        ["mcp/big", "mcp/binary"],
        "refused objects are not deleted"
    );
    bucket.delete().await;
}

/// Runs `tests/interop/py_extended.py` (AWS's Python extended client) with
/// `args`; returns what it printed.
async fn py_extended(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/py_extended.py");
    let ls = aws::localstack().await;
    let output = tokio::process::Command::new(asyncmcp_testkit::py_peer::py_peer_python())
        .arg(script)
        .args(args)
        .envs(ls.aws_env())
        .output()
        .await
        .expect("runs the Python extended client");
    assert!(
        output.status.success(),
        "py_extended.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A message AWS's Python extended client sends through S3 is read by our
/// inbox (its keys have no prefix: accepted by `accept_prefix("")`), and
/// one we send is read by it; each side deletes the object it read.
#[tokio::test(flavor = "multi_thread")]
async fn interop_with_the_python_extended_client() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-python").await;
    let queue = setup.queue("offload-python", None).await;
    let size = 2 * MIB;

    py_extended(&["send", &queue, &bucket.name, &size.to_string()]).await;
    let layer = OffloadLayer::new(settings(&bucket).accept_prefix(""));
    let inbox = layer.layer(setup.inbox(&queue).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let delivery = loop {
        let mut got = inbox
            .receive(1, Duration::from_secs(1))
            .await
            .expect("received");
        if let Some(delivery) = got.pop() {
            break delivery;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
    };
    assert!(delivery.refused.is_none(), "{:?}", delivery.refused);
    assert_eq!(delivery.message.body.len(), size);
    assert!(delivery.message.body == text(size));
    assert_eq!(delivery.message.attribute("From"), Some("python"));
    assert_eq!(delivery.message.attribute(PAYLOAD_SIZE_ATTRIBUTE), None);
    inbox.ack(&delivery.receipt).await.expect("acked");
    assert_eq!(drained(&bucket).await, Vec::<String>::new());

    let outbox = layer.layer(setup.outbox.clone());
    outbox
        .send(
            &queue,
            QueueMessage::new(text(size)).with_string("From", "rust"),
        )
        .await
        .expect("sent");
    assert_eq!(keys(&bucket).await.len(), 1, "offloaded");
    let got: serde_json::Value =
        serde_json::from_str(py_extended(&["receive", &queue, &bucket.name]).await.trim())
            .expect("JSON from the script");
    assert_eq!(got["length"], size);
    assert_eq!(got["matches"], true);
    assert_eq!(got["attributes"]["From"], "rust");
    assert_eq!(drained(&bucket).await, Vec::<String>::new());

    let _ = sqs::delete_queue(&setup.sqs, &queue).await;
    bucket.delete().await;
}

/// On a server that requires signatures, a request whose payload is gone
/// cannot be verified: it is answered uncorrelated (`id` null), still
/// naming the object, so that a forger cannot fail another client's call.
#[tokio::test(flavor = "multi_thread")]
async fn with_signatures_required_a_gone_payload_is_answered_uncorrelated() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-gone-signed").await;
    let route = setup.sqs_route(None).await;
    let keys_ = SigningKeys::new(vec![7; 32], None).expect("32-byte key");
    let (shutdown, server) = setup
        .server(&route, |b| {
            b.offload(settings(&bucket)).signing(keys_.clone(), true)
        })
        .await;
    let request = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/list"});
    let headers = asyncmcp::wire::Headers {
        reply_to: Some(route.reply_queue.clone()),
        ..Default::default()
    };
    let mut message = asyncmcp::wire::encode(&request, &headers).expect("encodes");
    message.body = PayloadPointer {
        bucket: bucket.name.clone(),
        key: "mcp/never-written".to_owned(),
    }
    .to_body();
    setup
        .outbox
        .send(&route.request_queue, message)
        .await
        .expect("sent");
    let replies = setup.inbox(&route.reply_queue).await;
    let (reply, attributes) = next_reply(replies.as_ref(), Duration::from_secs(20))
        .await
        .expect("an error reply");
    assert_eq!(reply["id"], serde_json::Value::Null, "{reply}");
    assert_eq!(attributes.attribute("RequestId"), None);
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("s3://{}/mcp/never-written", bucket.name))
            && text.contains("is gone"),
        "{reply}"
    );
    shutdown.cancel();
    server.await.expect("server task");
    setup.delete(&route).await;
    bucket.delete().await;
}

//! What the caller gets when a payload cannot be followed: gone on the
//! request or the reply side, in another bucket, or unverifiable.

use super::*;

/// An outbox (below the offload layer) that deletes the object a pointer
/// names before sending: the payload is gone when the message arrives.
pub(crate) struct Vanish {
    inner: Arc<dyn Outbox>,
    s3: aws_sdk_s3::Client,
}

pub(crate) struct VanishLayer(pub(crate) aws_sdk_s3::Client);

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

/// The error a call failed with, as text.
fn error_text(error: ServiceError) -> String {
    match error {
        ServiceError::McpError(data) => data.message.to_string(),
        other => panic!("expected an MCP error, got {other:?}"),
    }
}

/// A 2 MiB echo through `client` fails, in time, with an error naming the
/// gone payload's object in `bucket`.
async fn assert_call_fails_with_payload_gone(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    bucket: &TestBucket,
) {
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
    assert_call_fails_with_payload_gone(&client, &bucket).await;
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
    assert_call_fails_with_payload_gone(&client, &bucket).await;
    client.cancel().await.expect("client closes");
    shutdown.cancel();
    server.await.expect("server task");
    assert_eq!(
        bucket.drained().await,
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
    assert_eq!(theirs.keys().await, ["mcp/secret"]);
    shutdown.cancel();
    server.await.expect("server task");
    setup.delete(&route).await;
    ours.delete().await;
    theirs.delete().await;
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

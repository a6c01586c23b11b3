//! The layer alone, on the memory broker with LocalStack's S3.

use super::*;

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
        bucket.keys().await.len(),
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
    assert_eq!(bucket.keys().await.len(), 1, "release keeps the object");
    let again = inbox.receive(10, Duration::ZERO).await.expect("received");
    assert_eq!(again.len(), 1);
    inbox.ack(&again[0].receipt).await.expect("acked");
    assert_eq!(bucket.keys().await, Vec::<String>::new(), "ack deletes it");
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
    let mut left = bucket.keys().await;
    left.sort();
    assert_eq!(
        left,
        ["mcp/big", "mcp/binary"],
        "refused objects are not deleted"
    );
    bucket.delete().await;
}

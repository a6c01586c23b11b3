//! AWS's Python extended client (`tests/interop/py_extended.py`) on the
//! other side.

use super::*;

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
    assert_eq!(bucket.drained().await, Vec::<String>::new());

    let outbox = layer.layer(setup.outbox.clone());
    outbox
        .send(
            &queue,
            QueueMessage::new(text(size)).with_string("From", "rust"),
        )
        .await
        .expect("sent");
    assert_eq!(bucket.keys().await.len(), 1, "offloaded");
    let got: serde_json::Value =
        serde_json::from_str(py_extended(&["receive", &queue, &bucket.name]).await.trim())
            .expect("JSON from the script");
    assert_eq!(got["length"], size);
    assert_eq!(got["matches"], true);
    assert_eq!(got["attributes"]["From"], "rust");
    assert_eq!(bucket.drained().await, Vec::<String>::new());

    let _ = sqs::delete_queue(&setup.sqs, &queue).await;
    bucket.delete().await;
}

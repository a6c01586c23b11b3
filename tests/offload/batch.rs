//! The library's `Batch` with `offload`: large calls come back through S3,
//! an answer's object goes when the answer is acked, and an answer whose
//! payload is gone fails its call naming the object.

use asyncmcp::client::batch::{Batch, Call};

use super::*;

fn echo(text: String) -> Call {
    Call::new("echo", json!({ "text": text }).as_object().cloned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sends_and_receives_large_calls_through_s3() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-batch").await;
    let route = setup.sqs_route(None).await;
    let (shutdown, server) = setup.server(&route, |b| b.offload(settings(&bucket))).await;
    let mut batch = Batch::builder(&route.requests)
        .wait(Duration::from_secs(1))
        .offload(settings(&bucket))
        .build(setup.inbox(&route.reply_queue).await, setup.outbox.clone());
    let submitter = batch.submitter();
    for (key, size) in [("a", 3 * MIB), ("b", 2 * MIB)] {
        submitter
            .submit(key, &echo(text(size)))
            .await
            .expect("sent");
    }
    let mut sizes = Vec::new();
    while sizes.len() < 2 {
        let answer = tokio::time::timeout(Duration::from_secs(60), batch.next())
            .await
            .expect("an answer in time")
            .expect("open");
        let result = answer.outcome.as_ref().expect("a result");
        let got = text_of(result);
        assert!(got == text(got.len()));
        batch.ack(&answer).await.expect("acked");
        sizes.push((answer.key.clone(), got.len()));
    }
    sizes.sort();
    assert_eq!(
        sizes,
        [("a".to_owned(), 3 * MIB), ("b".to_owned(), 2 * MIB)]
    );
    assert_eq!(
        bucket.drained().await,
        Vec::<String>::new(),
        "objects left behind"
    );
    shutdown.cancel();
    server.await.expect("server task");
    setup.delete(&route).await;
    bucket.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answer_whose_payload_is_gone_fails_its_call() {
    let setup = Setup::new().await;
    let bucket = TestBucket::create("offload-batch-gone").await;
    let route = setup.sqs_route(None).await;
    let (shutdown, server) = setup
        .server(&route, |b| {
            b.outbox_layer(refused::VanishLayer(bucket.client.clone()))
                .offload(settings(&bucket))
        })
        .await;
    let mut batch = Batch::builder(&route.requests)
        .wait(Duration::from_secs(1))
        .offload(settings(&bucket))
        .build(setup.inbox(&route.reply_queue).await, setup.outbox.clone());
    batch
        .submitter()
        .submit("big", &echo(text(2 * MIB)))
        .await
        .expect("sent");
    let answer = tokio::time::timeout(Duration::from_secs(60), batch.next())
        .await
        .expect("an answer in time")
        .expect("open");
    assert_eq!(answer.key, "big");
    let error = answer.outcome.as_ref().expect_err("the call fails");
    assert!(
        error
            .message
            .contains(&format!("s3://{}/mcp/", bucket.name))
            && error.message.contains("is gone"),
        "{error:?}"
    );
    batch.ack(&answer).await.expect("acked");
    shutdown.cancel();
    server.await.expect("server task");
    setup.delete(&route).await;
    bucket.delete().await;
}

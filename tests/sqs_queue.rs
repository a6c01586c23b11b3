//! The SQS queue layer against LocalStack.
//!
//! Needs a running LocalStack: `localstack/start.sh`, then run the tests with
//! `AWS_ENDPOINT_URL=http://localhost:4566` (credentials default to `test`).
//! Without `AWS_ENDPOINT_URL` every test fails rather than passing silently.
#![cfg(feature = "sqs")]

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use asyncmcp::queue::sqs::{
    ApiCallCounter, Client, SqsInbox, SqsOutbox, SqsQueueOptions, SqsRedrive, client_with_counter,
    create_queue, delete_queue, queue_arn, sdk_config_from_env,
};
use asyncmcp::queue::{AttributeValue, Delivery, Inbox, Outbox, QueueError, QueueMessage, Receipt};
use tokio::task::JoinSet;

#[path = "common/deny.rs"]
mod deny;

/// A client against LocalStack, its call counter, and the queues to delete.
struct Env {
    client: Client,
    counter: ApiCallCounter,
    queues: Mutex<Vec<String>>,
}

impl Env {
    async fn new() -> Self {
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
            panic!(
                "AWS_ENDPOINT_URL is not set: these tests need LocalStack. Start it with \
                 `localstack/start.sh`, then run `AWS_ENDPOINT_URL=http://localhost:4566 \
                 cargo test --all-features`."
            );
        }
        let sdk = sdk_config_from_env().await;
        let counter = ApiCallCounter::new();
        let client = if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
            client_with_counter(&sdk, &counter)
        } else {
            let credentials =
                aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "localstack");
            let config = aws_sdk_sqs::config::Builder::from(&sdk)
                .credentials_provider(credentials)
                .interceptor(counter.clone())
                .build();
            Client::from_conf(config)
        };
        Self {
            client,
            counter,
            queues: Mutex::new(Vec::new()),
        }
    }

    /// Creates a uniquely named queue that [`run`] deletes afterwards.
    async fn queue(&self, tag: &str, options: &SqsQueueOptions) -> Result<String, QueueError> {
        let suffix = if options.fifo { ".fifo" } else { "" };
        let name = format!(
            "asyncmcp-test-{tag}-{}{suffix}",
            uuid::Uuid::new_v4().simple()
        );
        let url = create_queue(&self.client, &name, options).await?;
        self.queues.lock().unwrap().push(url.clone());
        Ok(url)
    }

    fn outbox(&self) -> SqsOutbox {
        SqsOutbox::new(self.client.clone())
    }

    async fn inbox(&self, url: &str) -> SqsInbox {
        SqsInbox::open(self.client.clone(), url).await.unwrap()
    }
}

/// Runs a test body, then deletes the queues it made, whatever the outcome.
async fn run(body: impl AsyncFnOnce(&Env) -> anyhow::Result<()>) {
    let env = Env::new().await;
    let result = body(&env).await;
    let queues = std::mem::take(&mut *env.queues.lock().unwrap());
    for url in queues {
        if let Err(error) = delete_queue(&env.client, &url).await {
            eprintln!("could not delete {url}: {error}");
        }
    }
    result.unwrap();
}

/// Receives until `count` deliveries have arrived (or 30 s have passed).
async fn receive(inbox: &SqsInbox, count: usize) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < count && tokio::time::Instant::now() < deadline {
        got.extend(inbox.receive(10, Duration::from_secs(2)).await.unwrap());
    }
    got
}

fn visibility(secs: u64) -> SqsQueueOptions {
    SqsQueueOptions::default().with_visibility_timeout(Duration::from_secs(secs))
}

#[tokio::test]
async fn a_message_round_trips_with_its_attributes() {
    run(async |env| {
        let url = env.queue("rt", &visibility(45)).await?;
        let mut message =
            QueueMessage::new(r#"{"jsonrpc":"2.0","id":1}"#).with_string("mcp-session", "s-1");
        message
            .attributes
            .insert("seq".to_owned(), AttributeValue::Number("42".to_owned()));
        env.outbox().send(&url, message.clone()).await?;

        let inbox = env.inbox(&url).await;
        assert_eq!(inbox.info().address, url);
        assert_eq!(inbox.info().visibility_timeout, Duration::from_secs(45));
        assert!(!inbox.info().fifo);
        assert!(inbox.info().max_message_size >= 1024);
        let got = receive(&inbox, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message, message);
        assert_eq!(got[0].receive_count, 1);
        assert!(!got[0].message_id.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn ack_removes_the_message() {
    run(async |env| {
        let url = env.queue("ack", &visibility(1)).await?;
        env.outbox().send(&url, QueueMessage::new("x")).await?;
        let inbox = env.inbox(&url).await;
        let got = receive(&inbox, 1).await;
        inbox.ack(&got[0].receipt).await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = inbox.receive(10, Duration::from_secs(1)).await?;
        assert!(again.is_empty(), "acked message came back: {again:?}");
        assert_eq!(env.counter.get("DeleteMessageBatch"), 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn release_makes_the_message_visible_at_once() {
    run(async |env| {
        // With 60 s of visibility, only the release can bring it back
        // within `receive`'s 30 s.
        let url = env.queue("release", &visibility(60)).await?;
        env.outbox().send(&url, QueueMessage::new("x")).await?;
        let inbox = env.inbox(&url).await;
        let first = receive(&inbox, 1).await.remove(0);
        inbox.release(&first.receipt).await?;
        let second = receive(&inbox, 1).await;
        assert_eq!(second.len(), 1, "the released message did not come back");
        assert_eq!(second[0].message_id, first.message_id);
        assert_eq!(second[0].receive_count, 2);
        inbox.ack(&second[0].receipt).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn extend_keeps_a_message_hidden_past_its_visibility() {
    run(async |env| {
        // Two messages with 2 s of visibility; only "kept" is extended. After
        // 4 s "control" is back, which shows the wait was long enough for
        // "kept" to be back too had the extension not held it.
        let url = env.queue("extend", &visibility(2)).await?;
        let outbox = env.outbox();
        outbox.send(&url, QueueMessage::new("kept")).await?;
        outbox.send(&url, QueueMessage::new("control")).await?;
        let inbox = env.inbox(&url).await;
        let first = receive(&inbox, 2).await;
        assert_eq!(first.len(), 2, "{first:?}");
        let kept = first.iter().find(|d| d.message.body == "kept").unwrap();
        inbox.extend(&kept.receipt, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;

        let mut again = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !again.iter().any(|d: &Delivery| d.message.body == "control")
            && tokio::time::Instant::now() < deadline
        {
            again.extend(inbox.receive(10, Duration::from_secs(1)).await?);
        }
        let bodies: Vec<&str> = again.iter().map(|d| d.message.body.as_str()).collect();
        assert_eq!(bodies, ["control"]);
        assert_eq!(again[0].receive_count, 2);
        inbox.ack(&kept.receipt).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_bogus_receipt_is_invalid() {
    run(async |env| {
        let url = env.queue("receipt", &visibility(30)).await?;
        let inbox = env.inbox(&url).await;
        let bogus = Receipt("not-a-receipt".to_owned());
        let released = inbox.release(&bogus).await;
        assert!(
            matches!(released, Err(QueueError::InvalidReceipt)),
            "{released:?}"
        );
        let acked = inbox.ack(&bogus).await;
        assert!(
            matches!(acked, Err(QueueError::InvalidReceipt)),
            "{acked:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_sends_and_acks_are_batched() {
    run(async |env| {
        let url = env.queue("batch", &visibility(60)).await?;
        let outbox = env.outbox();
        let mut sends = JoinSet::new();
        for i in 0..100 {
            let (outbox, url) = (outbox.clone(), url.clone());
            sends.spawn(async move { outbox.send(&url, QueueMessage::new(i.to_string())).await });
        }
        while let Some(sent) = sends.join_next().await {
            sent??;
        }
        let batches = env.counter.get("SendMessageBatch");
        eprintln!("100 sends took {batches} SendMessageBatch calls");
        assert!(batches <= 30, "too many calls: {:?}", env.counter);
        assert_eq!(
            env.counter.get("GetQueueAttributes"),
            1,
            "{:?}",
            env.counter
        );

        let inbox = std::sync::Arc::new(env.inbox(&url).await);
        let got = receive(&inbox, 100).await;
        let bodies: BTreeSet<String> = got.iter().map(|d| d.message.body.clone()).collect();
        assert_eq!(bodies.len(), 100);
        let mut acks = JoinSet::new();
        for delivery in got {
            let inbox = inbox.clone();
            acks.spawn(async move { inbox.ack(&delivery.receipt).await });
        }
        while let Some(acked) = acks.join_next().await {
            acked??;
        }
        let deletes = env.counter.get("DeleteMessageBatch");
        eprintln!("100 acks took {deletes} DeleteMessageBatch calls");
        assert!(deletes <= 30, "too many calls: {:?}", env.counter);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_oversize_message_fails_before_any_call() {
    run(async |env| {
        let options = SqsQueueOptions::default().with_max_message_size(1024);
        let url = env.queue("size", &options).await?;
        let outbox = env.outbox();
        assert_eq!(outbox.max_message_size(&url).await?, 1024);
        let refused = outbox.send(&url, QueueMessage::new("x".repeat(1025))).await;
        assert!(
            matches!(
                refused,
                Err(QueueError::TooLarge {
                    size: 1025,
                    limit: 1024
                })
            ),
            "{refused:?}"
        );
        assert_eq!(env.counter.get("SendMessageBatch"), 0);
        outbox
            .send(&url, QueueMessage::new("x".repeat(1024)))
            .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_refused_size_lookup_falls_back_to_the_sqs_limit() {
    // A role allowed only sqs:SendMessage on a reply queue: its
    // GetQueueAttributes is refused, and sends must go out all the same.
    run(async |env| {
        let url = env.queue("least-privilege", &visibility(30)).await?;
        let deny = deny::DenyOperation::new("GetQueueAttributes", deny::Protocol::SqsJson);
        let config = env
            .client
            .config()
            .to_builder()
            .interceptor(deny.clone())
            .build();
        let outbox = SqsOutbox::new(Client::from_conf(config));
        assert_eq!(outbox.max_message_size(&url).await?, 1_048_576);
        outbox.send(&url, QueueMessage::new("one")).await?;
        outbox.send(&url, QueueMessage::new("two")).await?;
        // The refusal is kept like an answer: one lookup for all sends.
        assert_eq!(deny.denied(), 1);
        let too_large = outbox
            .send(&url, QueueMessage::new("x".repeat(1_048_577)))
            .await;
        assert!(
            matches!(
                too_large,
                Err(QueueError::TooLarge {
                    size: 1_048_577,
                    limit: 1_048_576
                })
            ),
            "{too_large:?}"
        );
        let inbox = env.inbox(&url).await;
        let bodies: BTreeSet<String> = receive(&inbox, 2)
            .await
            .into_iter()
            .map(|d| d.message.body)
            .collect();
        assert_eq!(bodies, BTreeSet::from(["one".to_owned(), "two".to_owned()]));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_region_less_queue_url_allows_topics_of_the_configured_region() {
    // LocalStack's `http://localhost:4566/<account>/<name>` names no region:
    // the default reply policy takes it from the client the inbox was opened
    // with, so SNS reply topics of that account and region are allowed.
    run(async |env| {
        let url = env.queue("region-less", &visibility(30)).await?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL")?;
        let mut tail = url.rsplit('/');
        let (name, account) = (tail.next().unwrap(), tail.next().unwrap());
        let region_less = format!("{}/{account}/{name}", endpoint.trim_end_matches('/'));
        let inbox = env.inbox(&region_less).await;
        let builder = asyncmcp::QueueServer::builder(inbox, env.outbox());
        let policy = &builder.config().reply_policy;
        let topic = format!("arn:aws:sns:us-east-1:{account}:replies");
        assert_eq!(policy.check(Some(&topic)), Ok(topic.clone()));
        let queue = format!("{}/{account}/replies", endpoint.trim_end_matches('/'));
        assert_eq!(policy.check(Some(&queue)), Ok(queue.clone()));
        let elsewhere = format!("arn:aws:sns:eu-west-1:{account}:replies");
        assert!(policy.check(Some(&elsewhere)).is_err(), "{elsewhere}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_queue_is_no_such_queue() {
    run(async |env| {
        let url = env.queue("exists", &visibility(30)).await?;
        let missing = format!("{url}-missing");
        let opened = SqsInbox::open(env.client.clone(), &missing).await;
        assert!(
            matches!(opened, Err(QueueError::NoSuchQueue(_))),
            "{opened:?}"
        );
        let sent = env.outbox().send(&missing, QueueMessage::new("x")).await;
        assert!(matches!(sent, Err(QueueError::NoSuchQueue(_))), "{sent:?}");
        delete_queue(&env.client, &missing).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn fifo_queues_carry_the_message_group() {
    run(async |env| {
        let options = SqsQueueOptions::default()
            .with_fifo(true)
            .with_content_based_deduplication(true);
        let url = env.queue("fifo", &options).await?;
        let mut message = QueueMessage::new("ordered");
        message.group_id = Some("session-1".to_owned());
        env.outbox().send(&url, message).await?;
        let inbox = env.inbox(&url).await;
        assert!(inbox.info().fifo);
        let got = receive(&inbox, 1).await;
        assert_eq!(got[0].message.group_id.as_deref(), Some("session-1"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn create_is_idempotent_and_redrive_reaches_the_dlq() {
    run(async |env| {
        let dlq = env.queue("dlq", &visibility(30)).await?;
        let arn = queue_arn(&env.client, &dlq).await?;
        assert!(arn.starts_with("arn:aws:sqs:"), "{arn}");
        let options = visibility(30).with_redrive(SqsRedrive::new(arn, 1));
        let url = env.queue("redrive", &options).await?;
        let name = url.rsplit('/').next().unwrap_or_default();
        assert_eq!(create_queue(&env.client, name, &options).await?, url);
        // Other attributes: SQS refuses with QueueAlreadyExists; the URL is
        // returned all the same and the queue is left as it was.
        let other = options
            .clone()
            .with_visibility_timeout(Duration::from_secs(31));
        assert_eq!(create_queue(&env.client, name, &other).await?, url);

        env.outbox().send(&url, QueueMessage::new("poison")).await?;
        let inbox = env.inbox(&url).await;
        assert_eq!(inbox.info().visibility_timeout, Duration::from_secs(30));
        let first = receive(&inbox, 1).await.remove(0);
        inbox.release(&first.receipt).await?;
        let again = inbox.receive(10, Duration::from_secs(2)).await?;
        assert!(again.is_empty(), "redelivered past the redrive limit");
        let dead = receive(&env.inbox(&dlq).await, 1).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.body, "poison");
        Ok(())
    })
    .await;
}

//! The SQS queue layer against LocalStack: what only SQS does (batching,
//! the size lookup, FIFO, redrive, provisioning). The Inbox/Outbox contract
//! every broker keeps runs in `tests/sqs.rs`.
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
use asyncmcp::queue::{Delivery, Inbox, Outbox, QueueError, QueueMessage};
use asyncmcp_testkit::aws::deny;
use tokio::task::JoinSet;

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
        assert!((1..=30).contains(&batches), "{:?}", env.counter);
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
        assert!((1..=30).contains(&deletes), "{:?}", env.counter);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_oversize_message_fails_before_any_call() {
    // The limit itself is in the Inbox/Outbox contract (tests/sqs.rs).
    run(async |env| {
        let options = SqsQueueOptions::default().with_max_message_size(1024);
        let url = env.queue("size", &options).await?;
        let outbox = env.outbox();
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
    // Sending to one is in the Inbox/Outbox contract (tests/sqs.rs).
    run(async |env| {
        let url = env.queue("exists", &visibility(30)).await?;
        let missing = format!("{url}-missing");
        let opened = SqsInbox::open(env.client.clone(), &missing).await;
        assert!(
            matches!(opened, Err(QueueError::NoSuchQueue(_))),
            "{opened:?}"
        );
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
        assert_eq!(inbox.info().address, url);
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

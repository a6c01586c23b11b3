//! The SNS broker adapter against LocalStack: publishing through topics to
//! subscribed SQS queues, and provisioning topics and subscriptions. The
//! Inbox/Outbox contract every broker keeps runs in `tests/sns.rs`.
//!
//! Needs a running LocalStack with SQS and SNS (see `asyncmcp_testkit::aws`).
#![cfg(feature = "sns")]

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use asyncmcp::queue::sns::{
    self, SnsOutbox, SnsTopicOptions, SubscriptionOptions, create_topic, delete_topic, filter_on,
    subscribe_queue, unsubscribe,
};
use asyncmcp::queue::sqs::{
    self, ApiCallCounter, SqsInbox, SqsOutbox, SqsQueueOptions, allow_topic,
    create_queue_with_dead_letter, delete_queue,
};
use asyncmcp::queue::{
    AttributeValue, Delivery, Inbox, MAX_ATTRIBUTES, Outbox, QueueError, QueueMessage,
};
use asyncmcp_testkit::aws::{self, deny};
use asyncmcp_testkit::unique_name;
use tokio::task::JoinSet;

/// Clients against LocalStack, the SNS call counter, and what to delete.
struct Env {
    ls: &'static aws::LocalStack,
    sns: sns::Client,
    sqs: sqs::Client,
    counter: ApiCallCounter,
    topics: Mutex<Vec<String>>,
    queues: Mutex<Vec<String>>,
}

impl Env {
    async fn new() -> Self {
        let ls = aws::localstack().await;
        let sdk = ls.sdk_config().await;
        let counter = ApiCallCounter::new();
        Self {
            ls,
            sns: sns::client_with_counter(&sdk, &counter),
            sqs: sqs::client(&sdk),
            counter,
            topics: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
        }
    }

    /// Creates a uniquely named topic that [`run`] deletes afterwards.
    async fn topic(&self, tag: &str, options: &SnsTopicOptions) -> Result<String, QueueError> {
        let suffix = if options.fifo { ".fifo" } else { "" };
        let name = format!("{}{suffix}", unique_name(&format!("asyncmcp-sns-{tag}")));
        let arn = create_topic(&self.sns, &name, options).await?;
        self.topics.lock().unwrap().push(arn.clone());
        Ok(arn)
    }

    /// Creates a uniquely named queue that [`run`] deletes afterwards.
    async fn queue(&self, tag: &str) -> String {
        let url = self.ls.create_queue(&format!("asyncmcp-sns-{tag}")).await;
        self.track(&url);
        url
    }

    fn track(&self, queue_url: &str) {
        self.queues.lock().unwrap().push(queue_url.to_owned());
    }

    /// A queue subscribed to `topic` with `options`.
    async fn subscribed(
        &self,
        tag: &str,
        topic: &str,
        options: &SubscriptionOptions,
    ) -> Result<(String, String), QueueError> {
        let url = self.queue(tag).await;
        let subscription = subscribe_queue(&self.sns, &self.sqs, topic, &url, options).await?;
        Ok((url, subscription))
    }

    fn outbox(&self) -> SnsOutbox {
        SnsOutbox::new(self.sns.clone())
    }

    async fn inbox(&self, url: &str) -> SqsInbox {
        SqsInbox::open(self.sqs.clone(), url).await.unwrap()
    }
}

/// Runs a test body, then deletes the topics and queues it made, whatever
/// the outcome.
async fn run(body: impl AsyncFnOnce(&Env) -> anyhow::Result<()>) {
    let env = Env::new().await;
    let result = body(&env).await;
    let topics = std::mem::take(&mut *env.topics.lock().unwrap());
    for arn in topics {
        if let Err(error) = delete_topic(&env.sns, &arn).await {
            eprintln!("could not delete {arn}: {error}");
        }
    }
    let queues = std::mem::take(&mut *env.queues.lock().unwrap());
    for url in queues {
        if let Err(error) = delete_queue(&env.sqs, &url).await {
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

fn raw() -> SubscriptionOptions {
    SubscriptionOptions::default().with_raw_message_delivery(true)
}

/// A message with a `String` and a `Number` attribute.
fn attributed(body: &str) -> QueueMessage {
    let mut message = QueueMessage::new(body).with_string("mcp-session", "s-1");
    message
        .attributes
        .insert("seq".to_owned(), AttributeValue::Number("42".to_owned()));
    message
}

#[tokio::test]
async fn a_refused_size_lookup_falls_back_to_the_sns_limit() {
    // A role allowed only sns:Publish on a reply topic: its
    // GetTopicAttributes is refused, and publishes must go out all the same.
    run(async |env| {
        let topic = env
            .topic("least-privilege", &SnsTopicOptions::default())
            .await?;
        let (url, _) = env.subscribed("least-privilege", &topic, &raw()).await?;
        let deny = deny::DenyOperation::new("GetTopicAttributes", deny::Protocol::SnsQuery);
        let config = env
            .sns
            .config()
            .to_builder()
            .interceptor(deny.clone())
            .build();
        let outbox = SnsOutbox::new(sns::Client::from_conf(config));
        assert_eq!(outbox.max_message_size(&topic).await?, 262_144);
        outbox.send(&topic, QueueMessage::new("one")).await?;
        outbox.send(&topic, QueueMessage::new("two")).await?;
        // The refusal is kept like an answer: one lookup for all publishes.
        assert_eq!(deny.denied(), 1);
        let too_large = outbox
            .send(&topic, QueueMessage::new("x".repeat(262_145)))
            .await;
        assert!(
            matches!(
                too_large,
                Err(QueueError::TooLarge {
                    size: 262_145,
                    limit: 262_144
                })
            ),
            "{too_large:?}"
        );
        let bodies: BTreeSet<String> = receive(&env.inbox(&url).await, 2)
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
async fn enveloped_delivery_wraps_the_message_in_a_notification() {
    run(async |env| {
        let topic = env.topic("envelope", &SnsTopicOptions::default()).await?;
        let (url, _) = env
            .subscribed("envelope", &topic, &SubscriptionOptions::default())
            .await?;
        let body = r#"{"jsonrpc":"2.0","method":"ping"}"#;
        env.outbox().send(&topic, attributed(body)).await?;

        let got = receive(&env.inbox(&url).await, 1).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].message.attributes.is_empty(), "{got:?}");
        let envelope: serde_json::Value = serde_json::from_str(&got[0].message.body)?;
        assert_eq!(envelope["Type"], "Notification");
        assert_eq!(envelope["TopicArn"], topic.as_str());
        assert_eq!(envelope["Message"], body);
        assert_eq!(
            envelope["MessageAttributes"],
            serde_json::json!({
                "mcp-session": { "Type": "String", "Value": "s-1" },
                "seq": { "Type": "Number", "Value": "42" },
            })
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn filter_policies_route_each_client_its_own_messages() {
    run(async |env| {
        let topic = env.topic("filter", &SnsTopicOptions::default()).await?;
        let mut inboxes = Vec::new();
        for client in ["a", "b"] {
            let options = raw().with_filter_policy(filter_on("ClientId", &[client]));
            let (url, _) = env.subscribed(client, &topic, &options).await?;
            inboxes.push((client, env.inbox(&url).await));
        }
        let outbox = env.outbox();
        for client in ["a", "b"] {
            let message =
                QueueMessage::new(format!("for {client}")).with_string("ClientId", client);
            outbox.send(&topic, message).await?;
        }
        for (client, inbox) in &inboxes {
            let got = receive(inbox, 1).await;
            assert_eq!(got.len(), 1, "{client}: {got:?}");
            assert_eq!(got[0].message.body, format!("for {client}"));
            assert_eq!(got[0].message.attribute("ClientId"), Some(*client));
            inbox.ack(&got[0].receipt).await?;
            let more = inbox.receive(10, Duration::from_secs(1)).await?;
            assert!(more.is_empty(), "{client} got another's message: {more:?}");
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_publishes_are_batched_and_all_arrive() {
    run(async |env| {
        let topic = env.topic("batch", &SnsTopicOptions::default()).await?;
        let (url, _) = env.subscribed("batch", &topic, &raw()).await?;
        let outbox = env.outbox();
        let mut sends = JoinSet::new();
        for i in 0..30 {
            let (outbox, topic) = (outbox.clone(), topic.clone());
            sends.spawn(async move { outbox.send(&topic, QueueMessage::new(i.to_string())).await });
        }
        while let Some(sent) = sends.join_next().await {
            sent??;
        }
        let batches = env.counter.get("PublishBatch");
        eprintln!("30 publishes took {batches} PublishBatch calls");
        assert!((1..30).contains(&batches), "not batched: {:?}", env.counter);
        assert_eq!(
            env.counter.get("GetTopicAttributes"),
            1,
            "{:?}",
            env.counter
        );

        let got = receive(&env.inbox(&url).await, 30).await;
        let bodies: BTreeSet<String> = got.iter().map(|d| d.message.body.clone()).collect();
        let expected: BTreeSet<String> = (0..30).map(|i: i32| i.to_string()).collect();
        assert_eq!(bodies, expected);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn oversize_crowded_and_misaddressed_messages_are_refused() {
    // Before any call. A message at the limit, and a missing topic, are in
    // the Inbox/Outbox contract (tests/sns.rs).
    run(async |env| {
        let topic = env.topic("limits", &SnsTopicOptions::default()).await?;
        let outbox = env.outbox();
        assert_eq!(
            outbox.max_message_size(&topic).await?,
            sns::DEFAULT_MAX_MESSAGE_SIZE
        );
        let calls = env.counter.total();

        let oversize = QueueMessage::new("x".repeat(sns::DEFAULT_MAX_MESSAGE_SIZE + 1));
        let refused = outbox.send(&topic, oversize).await;
        assert!(
            matches!(
                refused,
                Err(QueueError::TooLarge {
                    size: 262_145,
                    limit: 262_144
                })
            ),
            "{refused:?}"
        );
        let mut crowded = QueueMessage::new("x");
        for i in 0..=MAX_ATTRIBUTES {
            crowded = crowded.with_string(&format!("a{i}"), "v");
        }
        let refused = outbox.send(&topic, crowded).await;
        assert!(
            matches!(
                refused,
                Err(QueueError::TooManyAttributes {
                    count: 11,
                    limit: 10
                })
            ),
            "{refused:?}"
        );
        assert_eq!(env.counter.total(), calls, "{:?}", env.counter);

        let queue = env.queue("limits").await;
        let refused = outbox.send(&queue, QueueMessage::new("x")).await;
        assert!(
            matches!(refused, Err(QueueError::UnsupportedDestination(_))),
            "{refused:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn fifo_topics_carry_the_message_group() {
    run(async |env| {
        let options = SnsTopicOptions::default()
            .with_fifo(true)
            .with_content_based_deduplication(true);
        let topic = env.topic("fifo", &options).await?;
        assert!(topic.ends_with(".fifo"), "{topic}");
        let url = sqs::create_queue(
            &env.sqs,
            &format!("{}.fifo", unique_name("asyncmcp-sns-fifo")),
            &SqsQueueOptions::default()
                .with_fifo(true)
                .with_content_based_deduplication(true),
        )
        .await?;
        env.track(&url);
        subscribe_queue(&env.sns, &env.sqs, &topic, &url, &raw()).await?;
        let outbox = env.outbox();
        for i in 0..3 {
            let mut message = QueueMessage::new(format!("m{i}"));
            message.group_id = Some("session-1".to_owned());
            outbox.send(&topic, message).await?;
        }
        // A FIFO queue holds back a group's later messages while earlier
        // ones are in flight: ack each as it arrives.
        let inbox = env.inbox(&url).await;
        let mut got = Vec::new();
        while got.len() < 3 {
            let delivered = receive(&inbox, 1).await;
            assert!(!delivered.is_empty(), "only {got:?} arrived");
            for delivery in delivered {
                inbox.ack(&delivery.receipt).await?;
                got.push(delivery.message);
            }
        }
        let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["m0", "m1", "m2"]);
        assert!(
            got.iter()
                .all(|m| m.group_id.as_deref() == Some("session-1"))
        );
        Ok(())
    })
    .await;
}

/// The `asyncmcp-sns-` statements of the queue's policy.
async fn asyncmcp_statements(env: &Env, url: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = env
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    let policy: serde_json::Value = serde_json::from_str(
        attributes
            .get(&QueueAttributeName::Policy)
            .map_or("{}", String::as_str),
    )?;
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    Ok(statements
        .into_iter()
        .filter(|s| {
            s["Sid"]
                .as_str()
                .is_some_and(|sid| sid.starts_with("asyncmcp-sns-"))
        })
        .collect())
}

#[tokio::test]
async fn provisioning_is_idempotent() {
    run(async |env| {
        let topic = env.topic("idem", &SnsTopicOptions::default()).await?;
        let name = topic.rsplit(':').next().unwrap_or_default();
        let again = create_topic(&env.sns, name, &SnsTopicOptions::default()).await?;
        assert_eq!(again, topic);
        let mismatched =
            create_topic(&env.sns, name, &SnsTopicOptions::default().with_fifo(true)).await;
        assert!(mismatched.is_err(), "{mismatched:?}");

        let url = env.queue("idem").await;
        allow_topic(&env.sqs, &url, &topic).await?;
        allow_topic(&env.sqs, &url, &topic).await?;
        let statements = asyncmcp_statements(env, &url).await?;
        assert_eq!(statements.len(), 1, "{statements:?}");
        assert_eq!(
            statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            topic.as_str()
        );

        let first_options = raw().with_filter_policy(filter_on("ClientId", &["a"]));
        let first = subscribe_queue(&env.sns, &env.sqs, &topic, &url, &first_options).await?;
        let same = subscribe_queue(&env.sns, &env.sqs, &topic, &url, &first_options).await?;
        assert_eq!(same, first);
        let second_options =
            SubscriptionOptions::default().with_filter_policy(filter_on("ClientId", &["b"]));
        let second = subscribe_queue(&env.sns, &env.sqs, &topic, &url, &second_options).await?;
        assert_eq!(second, first);
        assert_eq!(asyncmcp_statements(env, &url).await?.len(), 1);

        let read = async |arn: &str| -> anyhow::Result<_> {
            Ok(env
                .sns
                .get_subscription_attributes()
                .subscription_arn(arn)
                .send()
                .await?
                .attributes
                .unwrap_or_default())
        };
        let attributes = read(&second).await?;
        let policy: serde_json::Value = serde_json::from_str(&attributes["FilterPolicy"])?;
        assert_eq!(policy, filter_on("ClientId", &["b"]));
        assert_eq!(attributes["RawMessageDelivery"], "false");

        // The new policy is in effect: only "b" gets through.
        let outbox = env.outbox();
        for client in ["a", "b"] {
            let message = QueueMessage::new(client).with_string("ClientId", client);
            outbox.send(&topic, message).await?;
        }
        let inbox = env.inbox(&url).await;
        let got = receive(&inbox, 1).await;
        assert_eq!(got.len(), 1);
        let envelope: serde_json::Value = serde_json::from_str(&got[0].message.body)?;
        assert_eq!(envelope["Message"], "b");
        assert!(inbox.receive(10, Duration::from_secs(1)).await?.is_empty());

        // No filter policy removes the existing one.
        let third = subscribe_queue(&env.sns, &env.sqs, &topic, &url, &raw()).await?;
        assert_eq!(third, first);
        let attributes = read(&third).await?;
        assert!(
            attributes.get("FilterPolicy").is_none_or(|p| p.is_empty()),
            "{attributes:?}"
        );
        assert_eq!(attributes["RawMessageDelivery"], "true");

        // A dead-letter queue for undeliverable messages: SNS may write to it.
        let dead_letters = env.queue("idem-dlq").await;
        let with_dlq = raw().with_dead_letter_arn(sqs::queue_arn(&env.sqs, &dead_letters).await?);
        let fourth = subscribe_queue(&env.sns, &env.sqs, &topic, &url, &with_dlq).await?;
        assert_eq!(fourth, first);
        let statements = asyncmcp_statements(env, &dead_letters).await?;
        assert_eq!(statements.len(), 1, "{statements:?}");
        let attributes = read(&fourth).await?;
        assert!(
            attributes["RedrivePolicy"].contains(dead_letters.rsplit('/').next().unwrap_or("-")),
            "{attributes:?}"
        );

        unsubscribe(&env.sns, &first).await?;
        unsubscribe(&env.sns, &first).await?;
        let missing = format!("{topic}-missing");
        delete_topic(&env.sns, &missing).await?;
        delete_topic(&env.sns, &topic).await?;
        delete_topic(&env.sns, &topic).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_message_received_too_often_lands_in_the_dead_letter_queue() {
    run(async |env| {
        let options = SqsQueueOptions::default().with_visibility_timeout(Duration::from_secs(1));
        let name = unique_name("asyncmcp-sns-redrive");
        let (url, dlq) = create_queue_with_dead_letter(&env.sqs, &name, &options, 2).await?;
        env.track(&url);
        env.track(&dlq);
        assert!(url.ends_with(&name), "{url}");
        assert!(dlq.ends_with(&format!("{name}-dlq")), "{dlq}");
        let again = create_queue_with_dead_letter(&env.sqs, &name, &options, 2).await?;
        assert_eq!(again, (url.clone(), dlq.clone()));

        SqsOutbox::new(env.sqs.clone())
            .send(&url, QueueMessage::new("poison"))
            .await?;
        let inbox = env.inbox(&url).await;
        for count in 1..=2 {
            let got = receive(&inbox, 1).await;
            assert_eq!(got.len(), 1, "receive {count}");
            assert_eq!(got[0].receive_count, count);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let again = inbox.receive(10, Duration::from_secs(2)).await?;
        assert!(
            again.is_empty(),
            "redelivered past the redrive limit: {again:?}"
        );
        let dead = receive(&env.inbox(&dlq).await, 1).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.body, "poison");

        let fifo = options.clone().with_fifo(true);
        let name = format!("{}.fifo", unique_name("asyncmcp-sns-redrive"));
        let (url, dlq) = create_queue_with_dead_letter(&env.sqs, &name, &fifo, 1).await?;
        env.track(&url);
        env.track(&dlq);
        let stem = name.trim_end_matches(".fifo");
        assert!(dlq.ends_with(&format!("{stem}-dlq.fifo")), "{dlq}");
        assert!(env.inbox(&dlq).await.info().fifo);
        Ok(())
    })
    .await;
}

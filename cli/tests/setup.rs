//! `asyncmcp setup` on LocalStack: what it prints exists as it says, a
//! second run changes nothing and prints the same, FIFO, and refusals.

mod common;

use std::collections::BTreeMap;

use asyncmcp::queue::{sns, sqs};
use asyncmcp_testkit::{aws, unique_name};
use aws_sdk_sqs::types::QueueAttributeName;
use common::{asyncmcp, asyncmcp_with};

/// `KEY=value` lines as a map; panics on any other line.
fn settings(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("a KEY=value line: {line:?}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

async fn attributes(client: &sqs::Client, url: &str) -> BTreeMap<String, String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.as_str().to_owned(), value))
        .collect()
}

/// The redrive policy of the queue at `url`: (dead-letter ARN, receive count).
async fn redrive_policy(client: &sqs::Client, url: &str) -> (String, u64) {
    let attributes = attributes(client, url).await;
    let policy = attributes.get("RedrivePolicy").expect("a redrive policy");
    let policy: serde_json::Value = serde_json::from_str(policy).expect("JSON");
    let count = &policy["maxReceiveCount"];
    let count = count
        .as_u64()
        .or_else(|| count.as_str().and_then(|c| c.parse().ok()))
        .unwrap_or_else(|| panic!("a receive count: {policy}"));
    let target = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
    (target.to_owned(), count)
}

#[tokio::test]
async fn setup_creates_what_it_prints_and_a_second_run_changes_nothing() {
    let localstack = aws::localstack().await;
    let sdk = localstack.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let queue = unique_name("cli-setup");
    let topic = unique_name("cli-setup-topic");
    let reply_topic = unique_name("cli-setup-replies");
    let reply_queue = unique_name("cli-setup-responses");

    let first = asyncmcp(
        localstack,
        &[
            "setup",
            "--queue",
            &queue,
            "--topic",
            &topic,
            "--reply-topic",
            &reply_topic,
            "--reply-queue",
            &reply_queue,
        ],
    )
    .await
    .ok();
    assert_eq!(first.stderr, "", "nothing to warn about");
    let made = settings(&first.stdout);
    let keys: Vec<&str> = made.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ASYNCMCP_DLQ_URL",
            "ASYNCMCP_QUEUE_URL",
            "ASYNCMCP_REPLY_QUEUE_URL",
            "ASYNCMCP_REPLY_TOPIC_ARN",
            "ASYNCMCP_SUBSCRIPTION_ARN",
            "ASYNCMCP_TOPIC_ARN",
        ]
    );
    let queue_url = &made["ASYNCMCP_QUEUE_URL"];
    let dead_letter_url = &made["ASYNCMCP_DLQ_URL"];
    let topic_arn = &made["ASYNCMCP_TOPIC_ARN"];
    assert!(queue_url.ends_with(&format!("/{queue}")), "{queue_url}");
    assert!(
        dead_letter_url.ends_with(&format!("/{queue}-dlq")),
        "{dead_letter_url}"
    );
    assert!(topic_arn.ends_with(&format!(":{topic}")), "{topic_arn}");
    assert!(made["ASYNCMCP_REPLY_TOPIC_ARN"].ends_with(&format!(":{reply_topic}")));
    assert!(made["ASYNCMCP_REPLY_QUEUE_URL"].ends_with(&format!("/{reply_queue}")));

    // The queue redrives to its dead-letter queue after 5 receives.
    let dead_letter_arn = sqs::queue_arn(&sqs_client, dead_letter_url)
        .await
        .expect("the dead-letter queue exists");
    assert_eq!(
        redrive_policy(&sqs_client, queue_url).await,
        (dead_letter_arn, 5)
    );
    // The topic may write to the queue, which is subscribed with raw delivery.
    let policy = attributes(&sqs_client, queue_url).await;
    assert!(
        policy
            .get("Policy")
            .is_some_and(|p| p.contains(topic_arn.as_str())),
        "{policy:?}"
    );
    let subscription = sns_client
        .get_subscription_attributes()
        .subscription_arn(&made["ASYNCMCP_SUBSCRIPTION_ARN"])
        .send()
        .await
        .expect("the subscription exists")
        .attributes
        .unwrap_or_default();
    assert_eq!(subscription.get("TopicArn"), Some(topic_arn));
    assert_eq!(
        subscription.get("RawMessageDelivery").map(String::as_str),
        Some("true")
    );
    let queue_arn = sqs::queue_arn(&sqs_client, queue_url).await.expect("arn");
    assert_eq!(subscription.get("Endpoint"), Some(&queue_arn));

    // And it works: a publish arrives in the queue as it was published.
    sns_client
        .publish()
        .topic_arn(topic_arn)
        .message(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("publish");
    let received = sqs_client
        .receive_message()
        .queue_url(queue_url)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(
        received.first().and_then(|m| m.body.as_deref()),
        Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
        "raw delivery: no SNS envelope"
    );

    // Again, with the settings from the environment: the same lines, no
    // warnings (a queue or topic found with other attributes warns).
    let again = asyncmcp_with(
        localstack,
        &["setup"],
        &[
            ("ASYNCMCP_QUEUE", &queue),
            ("ASYNCMCP_TOPIC", &topic),
            ("ASYNCMCP_REPLY_TOPIC", &reply_topic),
            ("ASYNCMCP_REPLY_QUEUE", &reply_queue),
            ("ASYNCMCP_MAX_RECEIVE_COUNT", "5"),
        ],
    )
    .await
    .ok();
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(again.stderr, "");
    let (_, count) = redrive_policy(&sqs_client, queue_url).await;
    assert_eq!(count, 5);

    // --json: the same, as one object.
    let json = asyncmcp(
        localstack,
        &[
            "setup",
            "--json",
            "--queue",
            &queue,
            "--topic",
            &topic,
            "--reply-topic",
            &reply_topic,
            "--reply-queue",
            &reply_queue,
        ],
    )
    .await
    .ok();
    let object: BTreeMap<String, String> =
        serde_json::from_str(&json.stdout).expect("one JSON object of strings");
    let expected: BTreeMap<String, String> = made
        .iter()
        .map(|(key, value)| {
            let key = key.strip_prefix("ASYNCMCP_").unwrap_or(key).to_lowercase();
            (key, value.clone())
        })
        .collect();
    assert_eq!(object, expected);

    sns::delete_topic(&sns_client, topic_arn).await.ok();
    sns::delete_topic(&sns_client, &made["ASYNCMCP_REPLY_TOPIC_ARN"])
        .await
        .ok();
    for url in [
        queue_url,
        dead_letter_url,
        &made["ASYNCMCP_REPLY_QUEUE_URL"],
    ] {
        sqs::delete_queue(&sqs_client, url).await.ok();
    }
}

#[tokio::test]
async fn setup_makes_fifo_queues_and_topics() {
    let localstack = aws::localstack().await;
    let sdk = localstack.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let stem = unique_name("cli-fifo");
    let queue = format!("{stem}.fifo");
    let topic = format!("{}.fifo", unique_name("cli-fifo-topic"));
    let args = [
        "setup",
        "--queue",
        &queue,
        "--fifo",
        "--max-receive-count",
        "3",
        "--topic",
        &topic,
    ];
    let first = asyncmcp(localstack, &args).await.ok();
    let made = settings(&first.stdout);
    let queue_url = &made["ASYNCMCP_QUEUE_URL"];
    let dead_letter_url = &made["ASYNCMCP_DLQ_URL"];
    assert!(
        dead_letter_url.ends_with(&format!("/{stem}-dlq.fifo")),
        "{dead_letter_url}"
    );
    for url in [queue_url, dead_letter_url] {
        let attributes = attributes(&sqs_client, url).await;
        assert_eq!(
            attributes.get("FifoQueue").map(String::as_str),
            Some("true"),
            "{url}"
        );
    }
    let (_, count) = redrive_policy(&sqs_client, queue_url).await;
    assert_eq!(count, 3);
    let topic_arn = &made["ASYNCMCP_TOPIC_ARN"];
    let topic_attributes = sns_client
        .get_topic_attributes()
        .topic_arn(topic_arn)
        .send()
        .await
        .expect("the topic exists")
        .attributes
        .unwrap_or_default();
    assert_eq!(
        topic_attributes.get("FifoTopic").map(String::as_str),
        Some("true")
    );

    let again = asyncmcp(localstack, &args).await.ok();
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(again.stderr, "");

    sns::delete_topic(&sns_client, topic_arn).await.ok();
    for url in [queue_url, dead_letter_url] {
        sqs::delete_queue(&sqs_client, url).await.ok();
    }
}

#[tokio::test]
async fn setup_refuses_what_it_cannot_make() {
    let localstack = aws::localstack().await;
    let client = localstack.sqs_client().await;
    let queue = unique_name("cli-refused");

    // Refused before any call: nothing is made.
    asyncmcp(localstack, &["setup", "--queue", &queue, "--fifo"])
        .await
        .failed_saying("a FIFO queue's name ends in .fifo");
    let fifo = format!("{queue}.fifo");
    asyncmcp(
        localstack,
        &["setup", "--queue", &fifo, "--fifo", "--topic", "t"],
    )
    .await
    .failed_saying("a FIFO queue can subscribe only to a FIFO topic");
    for name in [queue.clone(), format!("{queue}-dlq"), fifo] {
        assert!(
            sqs::queue_url(&client, &name).await.is_err(),
            "{name} was not made"
        );
    }

    // Refused by SQS: the error says what was being made.
    let refused = asyncmcp(localstack, &["setup", "--queue", "no spaces allowed"])
        .await
        .failed_saying("creating queue \"no spaces allowed\"");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:#?}");
    assert!(
        !refused.stderr.contains("Response {"),
        "no debug dump: {refused:#?}"
    );

    // Refused by the command line: exit code 2, usage on stderr.
    let missing = asyncmcp(localstack, &["setup"]).await;
    assert_eq!(missing.status.code(), Some(2), "{missing:#?}");
    assert!(missing.stderr.contains("--queue"), "{missing:#?}");
    let help = asyncmcp(localstack, &["setup", "--help"]).await.ok();
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
    assert!(
        help.stdout.contains("[env: ASYNCMCP_QUEUE"),
        "{}",
        help.stdout
    );
}

//! The Inbox/Outbox contract and the end-to-end scenarios over SNS+SQS, as
//! emulated by LocalStack, and the SNS-only behaviour: a reply topic shared through filter policies, reply
//! topics provisioned by the client, and size limits.
//!
//! In the scenarios every "queue" is a topic with a queue subscribed to it:
//! requests are published to the server's topic and replies to the client's,
//! so both directions cross SNS, with raw delivery or in the SNS envelope.
//!
//! Needs LocalStack: `scripts/test.sh` starts it (see `asyncmcp_testkit::aws`).
#![cfg(feature = "sns")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use asyncmcp::client::{QueueClientBuilder, SnsReplies};
use asyncmcp::queue::sns::{self, SnsOutbox, SubscriptionOptions};
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox, QueueMessage, RoutingOutbox};
use asyncmcp::{QueueClientTransport, QueueServer};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::support::{call, text_of};
use asyncmcp_testkit::{QueueSpec, TestBroker, aws, next_reply, unique_name};
use rmcp::{ServiceError, ServiceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A topic and the queue subscribed to it.
struct Pair {
    queue_url: String,
    subscription: String,
}

/// Every address a topic with a queue subscribed to it (raw delivery or in
/// the envelope), but for queues with a size limit of their own.
struct SnsSqs {
    sqs: sqs::Client,
    sns: sns::Client,
    raw: bool,
    outbox: Arc<RoutingOutbox>,
    pairs: Mutex<HashMap<String, Pair>>,
}

impl SnsSqs {
    async fn new(raw: bool) -> Self {
        let sdk = aws::localstack().await.sdk_config().await;
        let sqs = sqs::client(&sdk);
        let sns = sns::client(&sdk);
        let outbox = RoutingOutbox::new()
            .with(Arc::new(SnsOutbox::new(sns.clone())))
            .with(Arc::new(SqsOutbox::new(sqs.clone())));
        Self {
            sqs,
            sns,
            raw,
            outbox: Arc::new(outbox),
            pairs: Mutex::default(),
        }
    }

    fn queue_of(&self, address: &str) -> String {
        let pairs = self.pairs.lock().expect("pairs");
        pairs
            .get(address)
            .map_or_else(|| address.to_owned(), |pair| pair.queue_url.clone())
    }
}

#[async_trait]
impl TestBroker for SnsSqs {
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
        let name = unique_name(prefix);
        let mut options = SqsQueueOptions::default();
        options.visibility_timeout = spec.visibility_timeout;
        options.max_message_size = spec.max_message_size;
        let queue_url = sqs::create_queue(&self.sqs, &name, &options)
            .await
            .expect("create queue");
        if spec.max_message_size.is_some() {
            // An SNS topic's limit is fixed (256 KiB): a queue with a limit
            // of its own is reached directly.
            return queue_url;
        }
        let topic = sns::create_topic(&self.sns, &name, &Default::default())
            .await
            .expect("create topic");
        let options = SubscriptionOptions::default().with_raw_message_delivery(self.raw);
        let subscription = sns::subscribe_queue(&self.sns, &self.sqs, &topic, &queue_url, &options)
            .await
            .expect("subscribe");
        self.pairs.lock().expect("pairs").insert(
            topic.clone(),
            Pair {
                queue_url,
                subscription,
            },
        );
        topic
    }
    async fn inbox(&self, address: &str) -> Arc<dyn Inbox> {
        Arc::new(
            SqsInbox::open(self.sqs.clone(), &self.queue_of(address))
                .await
                .expect("open queue"),
        )
    }
    fn outbox(&self) -> Arc<dyn Outbox> {
        self.outbox.clone()
    }
    async fn delete_queue(&self, address: &str) {
        let pair = self.pairs.lock().expect("pairs").remove(address);
        match pair {
            Some(pair) => {
                let _ = sns::unsubscribe(&self.sns, &pair.subscription).await;
                let _ = sns::delete_topic(&self.sns, address).await;
                let _ = sqs::delete_queue(&self.sqs, &pair.queue_url).await;
            }
            None => {
                let _ = sqs::delete_queue(&self.sqs, address).await;
            }
        }
    }
    async fn depth(&self, address: &str) -> usize {
        aws::queue_depth(&self.sqs, &self.queue_of(address)).await
    }
}

/// The contract and every scenario, with SNS wrapping each message in its
/// JSON envelope.
mod enveloped {
    use super::*;
    asyncmcp_testkit::broker_tests!(SnsSqs::new(false).await);
}

/// The contract and the scenarios that route and order messages, with raw
/// delivery.
mod raw {
    use super::*;
    asyncmcp_testkit::contract_tests!(SnsSqs::new(true).await);
    asyncmcp_testkit::scenario_tests!(SnsSqs::new(true).await;
        list_and_call,
        progress_is_delivered,
        notifications_precede_the_response,
        bad_input,
        shared_reply_queue,
    );
}

/// A demo server on a request topic, replying to `shared_reply` if given.
struct Server {
    broker: SnsSqs,
    requests: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(shared_reply: Option<&str>) -> Self {
        let broker = SnsSqs::new(true).await;
        let requests = broker.create_queue("sns-requests").await;
        let mut builder = QueueServer::builder(broker.inbox(&requests).await, broker.outbox())
            .wait(Duration::from_secs(1));
        if let Some(topic) = shared_reply {
            builder = builder.shared_reply_address(topic);
        }
        let shutdown = CancellationToken::new();
        let task = builder
            .build(DemoServer::factory(Arc::new(DemoStats::default())))
            .spawn(shutdown.clone());
        Self {
            broker,
            requests,
            shutdown,
            task,
        }
    }

    fn client(&self) -> QueueClientBuilder {
        QueueClientTransport::builder(&self.requests).wait(Duration::from_secs(1))
    }

    /// A client with a reply topic and queue of its own.
    async fn connect_own_topic(
        &self,
        sqs_client: &sqs::Client,
        sns_client: &sns::Client,
    ) -> QueueClientTransport {
        self.client()
            .connect_sns_sqs(sqs_client, sns_client, SnsReplies::OwnTopic)
            .await
            .expect("connect")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server");
        self.broker.delete_queue(&self.requests).await;
    }
}

/// Many clients share one reply topic: the server publishes every reply to
/// it with the caller's `ClientId`, and each client's subscription filter
/// policy lets through only its own.
#[tokio::test]
async fn clients_share_one_reply_topic_through_filter_policies() {
    let sdk = aws::localstack().await.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let topic = sns::create_topic(
        &sns_client,
        &unique_name("shared-replies"),
        &Default::default(),
    )
    .await
    .expect("topic");
    let server = Server::start(Some(&topic)).await;

    let mut clients = Vec::new();
    for _ in 0..2 {
        let transport = server
            .client()
            .connect_sns_sqs(
                &sqs_client,
                &sns_client,
                SnsReplies::SharedTopic(topic.clone()),
            )
            .await
            .expect("connect");
        assert_eq!(transport.reply_address(), topic);
        clients.push(transport);
    }
    // Each client's queue is subscribed with raw delivery and a filter
    // policy on its own ClientId.
    let reply_queues: Vec<String> = clients.iter().map(|t| t.reply_queue().to_owned()).collect();
    for transport in &clients {
        let attributes =
            subscription_of(&sqs_client, &sns_client, &topic, transport.reply_queue()).await;
        let policy: serde_json::Value =
            serde_json::from_str(attributes.get("FilterPolicy").map_or("", String::as_str))
                .unwrap_or_else(|e| panic!("a filter policy: {e}: {attributes:?}"));
        assert_eq!(policy, sns::filter_on("ClientId", &[transport.client_id()]));
        assert_eq!(attributes["RawMessageDelivery"], "true");
    }
    // A spy queue with the same filter as the first client sees exactly what
    // the first client is sent.
    let first_id = clients[0].client_id().to_owned();
    let spy = sqs::create_queue(
        &sqs_client,
        &unique_name("spy"),
        &SqsQueueOptions::default(),
    )
    .await
    .expect("spy queue");
    let spy_options = SubscriptionOptions::default()
        .with_raw_message_delivery(true)
        .with_filter_policy(sns::filter_on("ClientId", &[&first_id]));
    let spy_subscription =
        sns::subscribe_queue(&sns_client, &sqs_client, &topic, &spy, &spy_options)
            .await
            .expect("spy subscription");

    let mut sessions = Vec::new();
    for transport in clients {
        sessions.push(().serve(transport).await.expect("initialize"));
    }
    let runs = sessions.iter().enumerate().map(|(c, session)| async move {
        for i in 0..5 {
            let text = format!("client {c} call {i}");
            let result = session
                .call_tool(call("echo", json!({"text": text})))
                .await
                .expect("echo through the shared topic");
            assert_eq!(text_of(&result), text);
        }
    });
    futures::future::join_all(runs).await;
    // No client's queue holds another's replies: each took its own and
    // nothing is left (one that got another's would hand it back, and it
    // would stay).
    for queue in &reply_queues {
        let mut depth = usize::MAX;
        for _ in 0..50 {
            depth = aws::queue_depth(&sqs_client, queue).await;
            if depth == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(depth, 0, "messages left in the reply queue {queue}");
    }
    for session in sessions {
        session.cancel().await.expect("close");
    }

    // The spy got the first client's initialize response and five results,
    // and nothing of the second client's.
    let spy_inbox = SqsInbox::open(sqs_client.clone(), &spy).await.expect("spy");
    let mut seen = 0;
    while let Some((_, message)) = next_reply(&spy_inbox, Duration::from_secs(2)).await {
        assert_eq!(message.attribute("ClientId"), Some(first_id.as_str()));
        seen += 1;
    }
    assert_eq!(
        seen, 6,
        "initialize + 5 calls reached the first client's filter"
    );

    let _ = sns::unsubscribe(&sns_client, &spy_subscription).await;
    let _ = sqs::delete_queue(&sqs_client, &spy).await;
    server.stop().await;
    let _ = sns::delete_topic(&sns_client, &topic).await;
}

/// The attributes of the subscription of the queue at `queue_url` to `topic`.
async fn subscription_of(
    sqs_client: &sqs::Client,
    sns_client: &sns::Client,
    topic: &str,
    queue_url: &str,
) -> HashMap<String, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let queue_arn = sqs_client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue ARN");
    let subscriptions = sns_client
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .send()
        .await
        .expect("subscriptions");
    let subscription = subscriptions
        .subscriptions()
        .iter()
        .find(|s| s.endpoint() == Some(queue_arn.as_str()))
        .and_then(|s| s.subscription_arn())
        .unwrap_or_else(|| panic!("no subscription of {queue_arn} to {topic}"))
        .to_owned();
    sns_client
        .get_subscription_attributes()
        .subscription_arn(subscription)
        .send()
        .await
        .expect("subscription attributes")
        .attributes
        .unwrap_or_default()
}

/// With `SnsReplies::OwnTopic` the client creates its reply topic, queue and
/// subscription on connect, names the topic in `ReplyTo`, and removes all of
/// it on close.
#[tokio::test]
async fn own_reply_topic_is_provisioned_and_removed() {
    let sdk = aws::localstack().await.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let server = Server::start(None).await;
    let transport = server.connect_own_topic(&sqs_client, &sns_client).await;
    let topic = transport.reply_address().to_owned();
    let queue = transport.reply_queue().to_owned();
    assert!(asyncmcp::queue::is_topic_arn(&topic), "{topic}");
    assert_ne!(topic, queue);

    let session = ().serve(transport).await.expect("initialize");
    let result = session
        .call_tool(call("add", json!({"a": 2, "b": 3})))
        .await
        .expect("add");
    assert_eq!(text_of(&result), "5");
    session.cancel().await.expect("close");

    assert!(
        reply_route_removed(&sqs_client, &sns_client, &topic, &queue).await,
        "reply topic and queue deleted on close"
    );
    server.stop().await;
}

/// A request larger than the topic accepts fails at the caller with the
/// sizes; a response larger than the reply topic accepts becomes a JSON-RPC
/// error saying so. Neither is dropped silently.
#[tokio::test]
async fn oversize_messages_get_clear_errors() {
    let sdk = aws::localstack().await.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let server = Server::start(None).await;
    let transport = server.connect_own_topic(&sqs_client, &sns_client).await;
    let reply_topic = transport.reply_address().to_owned();
    let reply_queue = transport.reply_queue().to_owned();
    let session = ().serve(transport).await.expect("initialize");

    let huge = "x".repeat(300 * 1024);
    let error = session
        .call_tool(call("echo", json!({"text": huge})))
        .await
        .expect_err("a request over 256 KiB cannot be published");
    match &error {
        ServiceError::TransportSend(inner) => {
            let text = inner.to_string();
            let [size, limit] = sizes_in(&text);
            assert!(size > 300 * 1024, "the request's size: {text}");
            assert_eq!(limit, 262_144, "the topic's limit: {text}");
        }
        other => panic!("expected a transport send error, got {other:?}"),
    }
    // The session still works.
    let small = session
        .call_tool(call("echo", json!({"text": "still here"})))
        .await
        .expect("echo");
    assert_eq!(text_of(&small), "still here");
    session.cancel().await.expect("close");

    // A 300 KiB request sent to the server's queue directly (SQS takes up to
    // 1 MiB) whose echo cannot go through the reply topic.
    let replies = aws::TopicQueue::create(&sqs_client, &sns_client, "oversize", true).await;
    let big = json!({"jsonrpc":"2.0","id":45,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"y".repeat(300 * 1024)}}});
    let request_queue = server.broker.queue_of(&server.requests);
    SqsOutbox::new(sqs_client.clone())
        .send(
            &request_queue,
            QueueMessage::new(big.to_string()).with_string("ReplyTo", &replies.topic),
        )
        .await
        .expect("send to the request queue");
    let inbox = SqsInbox::open(sqs_client.clone(), &replies.queue)
        .await
        .expect("inbox");
    let (reply, _) = next_reply(&inbox, Duration::from_secs(20))
        .await
        .expect("an error reply through the topic");
    assert_eq!(reply["id"], 45);
    assert_eq!(reply["error"]["code"], -32603);
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeds"), "{reply}");
    let [size, limit] = sizes_in(message);
    assert!(size > 300 * 1024, "the response's size: {reply}");
    assert_eq!(limit, 262_144, "the topic's limit: {reply}");

    replies.delete(&sqs_client, &sns_client).await;
    assert!(
        reply_route_removed(&sqs_client, &sns_client, &reply_topic, &reply_queue).await,
        "the client removed its reply topic and queue"
    );
    server.stop().await;
}

/// The two numbers of a size error ("... of N bytes exceeds ... of M
/// bytes"): the message's size and the destination's limit.
fn sizes_in(text: &str) -> [usize; 2] {
    let numbers: Vec<usize> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|digits| digits.parse().ok())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|numbers| panic!("expected two sizes, found {numbers:?} in {text:?}"))
}

/// Whether both the topic and the queue no longer exist.
async fn reply_route_removed(
    sqs_client: &sqs::Client,
    sns_client: &sns::Client,
    topic: &str,
    queue: &str,
) -> bool {
    let topic_gone = sns_client
        .get_topic_attributes()
        .topic_arn(topic)
        .send()
        .await
        .is_err();
    let queue_gone = sqs_client
        .get_queue_attributes()
        .queue_url(queue)
        .send()
        .await
        .is_err();
    topic_gone && queue_gone
}

//! FIFO request and reply queues on SQS (LocalStack), a module of
//! `tests/sqs.rs`. Each message carries a group (a client's request: its
//! `ClientId` and the request's id; anything else a client sends: a group of
//! its own; a server's replies: the request's `ClientId`) and a fresh
//! deduplication id, so that a deliberate resend reaches the server and is
//! answered from its replay cache. A request holds its group until it is
//! answered (late ack, heartbeat), which with a group per request blocks
//! nothing else: a client's calls run side by side and a cancellation
//! reaches the call it cancels.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use asyncmcp::queue::QueueMessage;
use asyncmcp::{QueueClientTransport, QueueServer};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::eventually;
use asyncmcp_testkit::scenarios::LoggingInbox;
use asyncmcp_testkit::support::{call, text_of};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, Request};
use rmcp::service::PeerRequestOptions;
use rmcp::transport::Transport;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

/// A FIFO queue with a short visibility timeout, so that a request left on
/// the queue as a duplicate comes back soon.
async fn fifo_queue(broker: &Sqs, prefix: &str) -> String {
    let name = format!("{}.fifo", unique_name(prefix).replace('-', "_"));
    let options = SqsQueueOptions::default()
        .with_fifo(true)
        .with_visibility_timeout(Duration::from_secs(2));
    sqs::create_queue(&broker.client, &name, &options)
        .await
        .expect("FIFO queue")
}

/// Receives `count` messages from `queue` with their FIFO attributes,
/// leaving them on the queue (hidden until their visibility lapses or is
/// reset).
async fn receive_raw(broker: &Sqs, queue: &str, count: usize) -> Vec<Message> {
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while taken.len() < count && tokio::time::Instant::now() < deadline {
        let received = broker
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        taken.extend(received.messages.unwrap_or_default());
    }
    assert_eq!(taken.len(), count, "messages received from {queue}");
    taken
}

fn system_attribute(message: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    message
        .attributes()
        .and_then(|attributes| attributes.get(&name))
        .map(String::as_str)
}

fn group(message: &Message) -> Option<&str> {
    system_attribute(message, MessageSystemAttributeName::MessageGroupId)
}

struct FifoServer {
    stats: Arc<DemoStats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl FifoServer {
    fn start(inbox: impl Inbox, broker: &Sqs) -> Self {
        let stats = Arc::new(DemoStats::default());
        let shutdown = CancellationToken::new();
        let task = QueueServer::builder(inbox, broker.outbox())
            .wait(Duration::from_secs(1))
            .build(DemoServer::factory(stats.clone()))
            .spawn(shutdown.clone());
        Self {
            stats,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server");
    }
}

/// A client sends a request in the group `<ClientId>.<id>` with a fresh
/// deduplication id per send, so its deliberate resend of a request reaches the server,
/// which answers it from the replay cache (the tool runs once). A server's
/// reply goes in the group of the request's `ClientId`.
#[tokio::test]
async fn fifo_queues_work_end_to_end() {
    let broker = Sqs::new().await;
    let requests = fifo_queue(&broker, "requests").await;
    let replies = fifo_queue(&broker, "replies").await;
    let hand_replies = fifo_queue(&broker, "hand_replies").await;
    let mut transport = QueueClientTransport::builder(&requests)
        .wait(Duration::from_secs(1))
        .build(broker.inbox(&replies).await, broker.outbox());
    let client_id = transport.client_id().to_owned();

    // The same request sent twice, read off the queue before a server runs.
    let add: ClientJsonRpcMessage = serde_json::from_value(json!({"jsonrpc":"2.0","id":1,
        "method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}))
    .expect("a request");
    transport.send(add.clone()).await.expect("send");
    transport.send(add).await.expect("resend");
    let sent = receive_raw(&broker, &requests, 2).await;
    let mut deduplication_ids = HashSet::new();
    for message in &sent {
        let expected = format!("{client_id}.1");
        assert_eq!(group(message), Some(expected.as_str()), "{message:?}");
        let id = system_attribute(message, MessageSystemAttributeName::MessageDeduplicationId);
        deduplication_ids.insert(id.expect("a deduplication id").to_owned());
    }
    assert_eq!(
        deduplication_ids.len(),
        2,
        "a fresh deduplication id per send"
    );
    for message in &sent {
        broker
            .client
            .change_message_visibility()
            .queue_url(&requests)
            .receipt_handle(message.receipt_handle().expect("receipt"))
            .visibility_timeout(0)
            .send()
            .await
            .expect("put the request back");
    }

    let server = FifoServer::start(broker.inbox(&requests).await, &broker);
    for _ in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(20), transport.receive())
            .await
            .expect("both sends answered")
            .expect("open");
        let answer = serde_json::to_value(&answer).expect("serializable");
        assert_eq!(answer["id"], 1, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "5", "{answer}");
    }
    assert_eq!(
        server.stats.calls.load(Ordering::Relaxed),
        1,
        "the resend was answered from the replay cache"
    );
    transport.close().await.expect("close");

    // A request sent by hand: its reply is in the group of its ClientId.
    let hand_id = format!("fifo-hand-{}", uuid::Uuid::new_v4().simple());
    let echo = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"grouped"}}});
    let request = QueueMessage::new(echo.to_string())
        .with_string("ReplyTo", &hand_replies)
        .with_string("ClientId", &hand_id)
        .for_destination(&requests, &hand_id);
    broker
        .outbox()
        .send(&requests, request)
        .await
        .expect("send by hand");
    let reply = receive_raw(&broker, &hand_replies, 1).await;
    assert_eq!(group(&reply[0]), Some(hand_id.as_str()), "{reply:?}");
    let body: serde_json::Value =
        serde_json::from_str(reply[0].body().unwrap_or_default()).expect("JSON");
    assert_eq!(body["result"]["content"][0]["text"], "grouped", "{body}");

    server.stop().await;
    for queue in [&requests, &replies, &hand_replies] {
        broker.delete_queue(queue).await;
    }
}

/// Calls of one client on FIFO queues run side by side (each request is in
/// a group of its own, which its late ack holds), and a cancel, in a group
/// of its own, reaches the call it cancels while it runs.
#[tokio::test]
async fn fifo_calls_run_side_by_side_and_a_cancel_lands() {
    let broker = Sqs::new().await;
    let requests = fifo_queue(&broker, "requests").await;
    let replies = fifo_queue(&broker, "replies").await;
    let (inbox, deliveries) = LoggingInbox::new(broker.inbox(&requests).await);
    let server = FifoServer::start(inbox, &broker);
    let transport = QueueClientTransport::builder(&requests)
        .wait(Duration::from_secs(1))
        .build(broker.inbox(&replies).await, broker.outbox());
    let client = ().serve(transport).await.expect("initialize");
    let stats = server.stats.clone();

    // Three 6 s calls, each sent once the one before has started: each
    // starts while the others run. (In one group per client, a call would
    // wait in the queue until the one before it is answered; sent together
    // they could still arrive in one receive, hence one at a time.)
    let mut running = Vec::new();
    for started in 1..=3 {
        let client = client.clone();
        running.push(tokio::spawn(async move {
            client
                .call_tool(call("sleep", json!({"ms": 6_000})))
                .await
                .expect("sleep")
        }));
        let ok = eventually(Duration::from_secs(5), || {
            stats.calls.load(Ordering::Relaxed) == started
        })
        .await;
        assert!(ok, "call {started} started while the others ran");
    }
    assert_eq!(stats.sleeps_completed.load(Ordering::Relaxed), 0);
    for call in running {
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("answered in time")
            .expect("joined");
    }

    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call("sleep", json!({"ms": 10_000})))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    let started = eventually(Duration::from_secs(20), || {
        stats.calls.load(Ordering::Relaxed) == 4
    })
    .await;
    assert!(started, "the long call started");
    handle.cancel(Some("test".into())).await.expect("cancel");
    let cancelled = eventually(Duration::from_secs(8), || {
        stats.sleeps_cancelled.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(cancelled, "the cancel stopped the running call");
    assert!(deliveries.received_at("notifications/cancelled").is_some());
    assert_eq!(stats.sleeps_completed.load(Ordering::Relaxed), 3);

    let echoed = client
        .call_tool(call("echo", json!({"text": "after"})))
        .await
        .expect("echo after the cancel");
    assert_eq!(text_of(&echoed), "after");
    client.cancel().await.expect("close");
    server.stop().await;
    broker.delete_queue(&requests).await;
    broker.delete_queue(&replies).await;
}

//! Scenarios of how a delivery is settled when a send fails: dead-lettering
//! that can never succeed settles the request instead of looping, error
//! replies follow the same late-ack rule as results, and a request whose
//! reply failed comes back soon rather than after its visibility timeout.

use super::*;

/// `add(1, 1)` as request `id`, answered to `replies`.
fn add_request(id: u64, replies: &str) -> QueueMessage {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"add","arguments":{"a":1,"b":1}}});
    QueueMessage::new(body.to_string())
        .with_string("ReplyTo", replies)
        .with_string("ClientId", "settling-client")
}

/// Puts `message` on a fresh request queue (1 s visibility) with no server,
/// lets a worker take it once and die (never settling it), then starts a
/// server that dead-letters to `dead_letters` after one delivery: the
/// server's first delivery of the request is over the count.
async fn poisoned<'a>(
    broker: &'a dyn TestBroker,
    message: QueueMessage,
    dead_letters: &str,
) -> Fixture<'a> {
    poisoned_through(broker, message, dead_letters, broker.outbox()).await
}

/// [`poisoned`], with the server sending through `server_outbox`.
async fn poisoned_through<'a>(
    broker: &'a dyn TestBroker,
    message: QueueMessage,
    dead_letters: &str,
    server_outbox: Arc<dyn Outbox>,
) -> Fixture<'a> {
    let spec = QueueSpec {
        visibility_timeout: Some(Duration::from_secs(1)),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::without_server_on(broker, spec).await;
    fx.inject(message).await;
    let requests = broker.inbox(&fx.requests).await;
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while taken.is_empty() && tokio::time::Instant::now() < deadline {
        taken = requests
            .receive(1, Duration::from_secs(1))
            .await
            .expect("receive");
    }
    assert_eq!(taken.len(), 1, "a worker took the request");
    let address = dead_letters.to_owned();
    fx.server_outbox = server_outbox;
    fx.start_server(move |b| b.dead_letter(address, 1)).await;
    fx
}

/// A request carrying the ten attributes a queue allows is dead-lettered
/// within ten: the reason and receive count take the place of the
/// request's least important attributes, and its reply address and client
/// id are kept.
pub async fn dead_letters_keep_within_ten_attributes(broker: &dyn TestBroker) {
    let dead_letters = broker.create_queue("attr-dead-letters").await;
    let replies = broker.create_queue("attr-replies").await;
    let mut message = add_request(301, &replies);
    for i in 0..8 {
        message = message.with_string(&format!("Pad{i}"), "x");
    }
    assert_eq!(message.attributes.len(), 10);
    let mut fx = poisoned(broker, message, &dead_letters).await;
    fx.queues.extend([dead_letters.clone(), replies.clone()]);

    let inbox = broker.inbox(&dead_letters).await;
    let (body, moved) = next_reply(&*inbox, Duration::from_secs(15))
        .await
        .expect("the request reached the dead-letter queue");
    assert_eq!(body["id"], 301);
    assert!(
        moved.attributes.len() <= 10,
        "{} attributes: {:?}",
        moved.attributes.len(),
        moved.attributes.keys()
    );
    let reason = moved.attribute("DeadLetterReason").unwrap_or_default();
    assert!(reason.contains("delivered 2 times"), "{reason}");
    assert_eq!(moved.attribute("ReceiveCount"), Some("2"));
    assert_eq!(moved.attribute("ReplyTo"), Some(replies.as_str()));
    assert_eq!(moved.attribute("ClientId"), Some("settling-client"));

    let replies_inbox = broker.inbox(&replies).await;
    let (told, _) = next_reply(&*replies_inbox, Duration::from_secs(10))
        .await
        .expect("the caller is told");
    assert_eq!(told["id"], 301);
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request removed"
    );
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 0, "never run");
    fx.stop().await;
}

/// A request the dead-letter queue cannot take (larger than its limit) is
/// removed with an error log, and its caller told, instead of being
/// delivered again and again.
pub async fn dead_letters_too_large_are_settled(broker: &dyn TestBroker) {
    let spec = QueueSpec {
        max_message_size: Some(1024),
        ..QueueSpec::default()
    };
    let dead_letters = broker.create_queue_with("small-dead-letters", spec).await;
    let replies = broker.create_queue("large-replies").await;
    let body = json!({"jsonrpc":"2.0","id":302,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"x".repeat(2000)}}});
    let message = QueueMessage::new(body.to_string())
        .with_string("ReplyTo", &replies)
        .with_string("ClientId", "settling-client");
    let mut fx = poisoned(broker, message, &dead_letters).await;
    fx.queues.extend([dead_letters.clone(), replies.clone()]);

    let replies_inbox = broker.inbox(&replies).await;
    let (told, _) = next_reply(&*replies_inbox, Duration::from_secs(15))
        .await
        .expect("the caller is told");
    assert_eq!(told["id"], 302);
    assert_eq!(told["error"]["code"], -32603);
    let text = told["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("could not be dead-lettered"), "{text}");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request removed, not looping"
    );
    assert_eq!(broker.depth(&dead_letters).await, 0);
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 0, "never run");
    fx.stop().await;
}

/// A request that came with FIFO ids (from a FIFO queue) loses them on its
/// way to a standard dead-letter queue, which would refuse them. Only where
/// the broker lets such a message be made on a standard queue (memory).
pub async fn dead_letters_drop_fifo_ids_for_standard_queues(broker: &dyn TestBroker) {
    let dead_letters = broker.create_queue("fifo-dead-letters").await;
    let replies = broker.create_queue("fifo-replies").await;
    let probe = broker.create_queue("fifo-probe").await;
    let mut message = add_request(303, &replies);
    message.group_id = Some("g".to_owned());
    message.deduplication_id = Some("d".to_owned());
    let made = broker.outbox().send(&probe, message.clone()).await.is_ok();
    broker.delete_queue(&probe).await;
    if !made {
        // A standard queue of this broker refuses FIFO ids: the case
        // cannot arise here (the unit tests of dead_letter.rs cover it).
        broker.delete_queue(&dead_letters).await;
        broker.delete_queue(&replies).await;
        return;
    }
    let mut fx = poisoned(broker, message, &dead_letters).await;
    fx.queues.extend([dead_letters.clone(), replies.clone()]);
    let inbox = broker.inbox(&dead_letters).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut moved = Vec::new();
    while moved.is_empty() && tokio::time::Instant::now() < deadline {
        moved = inbox
            .receive(1, Duration::from_secs(1))
            .await
            .expect("receive");
    }
    let moved = moved
        .pop()
        .expect("the request reached the dead-letter queue");
    assert_eq!(moved.message.group_id, None);
    assert_eq!(moved.message.deduplication_id, None);
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request removed"
    );
    fx.stop().await;
}

/// The notice telling a dead-lettered request's caller, failing once for
/// a passing reason: the request is not deleted, its redelivery answers
/// the caller with the notice (kept for replay), and it is not moved twice.
pub async fn dead_letter_notice_failing_once_is_replayed(broker: &dyn TestBroker) {
    let dead_letters = broker.create_queue("notice-dead-letters").await;
    let replies = broker.create_queue("notice-replies").await;
    let outbox = FaultyOutbox::new(broker.outbox());
    outbox.fail_final(&replies, json!(306), Failure::Transient, 1);
    let message = add_request(306, &replies);
    let mut fx = poisoned_through(broker, message, &dead_letters, outbox.clone()).await;
    fx.queues.extend([dead_letters.clone(), replies.clone()]);

    let replies_inbox = broker.inbox(&replies).await;
    let (told, _) = next_reply(&*replies_inbox, Duration::from_secs(15))
        .await
        .expect("the caller is told on the redelivery");
    assert_eq!(told["id"], 306);
    assert_eq!(told["error"]["code"], -32603);
    let text = told["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("dead-lettered"), "{text}");
    let failed: Vec<bool> = outbox
        .finals(&replies, &json!(306))
        .iter()
        .map(|a| a.failed)
        .collect();
    assert_eq!(failed, [true, false], "failed, then replayed");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request removed"
    );
    let moves = outbox
        .destinations()
        .iter()
        .filter(|address| **address == dead_letters)
        .count();
    assert_eq!(moves, 1, "dead-lettered once");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 0, "never run");
    fx.stop().await;
}

/// An error reply (to an invalid request) whose send fails once for a
/// passing reason: the request is not deleted, and its redelivery, soon
/// and not after the 30 s visibility timeout, answers it.
pub async fn error_reply_failing_once_is_sent_again(broker: &dyn TestBroker) {
    let outbox = FaultyOutbox::new(broker.outbox());
    let spec = QueueSpec {
        visibility_timeout: Some(Duration::from_secs(30)),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::start_with_outbox(broker, spec, outbox.clone(), |b| b).await;
    let replies = fx.queue("error-replies").await;
    outbox.fail_final(&replies, json!(304), Failure::Transient, 1);
    // JSON, but not JSON-RPC: answered -32600 with its id.
    fx.inject(
        QueueMessage::new(r#"{"id": 304, "method": "tools/list"}"#)
            .with_string("ReplyTo", &replies),
    )
    .await;
    let inbox = broker.inbox(&replies).await;
    let (reply, _) = next_reply(&*inbox, Duration::from_secs(10))
        .await
        .expect("answered on the redelivery, within seconds");
    assert_eq!(reply["id"], 304);
    assert_eq!(reply["error"]["code"], -32600);
    let failed: Vec<bool> = outbox
        .finals(&replies, &json!(304))
        .iter()
        .map(|a| a.failed)
        .collect();
    assert_eq!(failed, [true, false], "sent twice: failed, then answered");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request deleted once answered"
    );
    fx.stop().await;
}

/// On a queue with a 60 s visibility timeout, a final response that fails
/// once for a passing reason is answered within seconds (the request is
/// made visible again soon), from the replay cache: the tool ran once.
pub async fn failed_reply_comes_back_soon(broker: &dyn TestBroker) {
    let outbox = FaultyOutbox::new(broker.outbox());
    let spec = QueueSpec {
        visibility_timeout: Some(Duration::from_secs(60)),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::start_with_outbox(broker, spec, outbox.clone(), |b| b).await;
    let replies = fx.queue("soon-replies").await;
    outbox.fail_final(&replies, json!(305), Failure::Transient, 1);
    let started = tokio::time::Instant::now();
    fx.inject(add_request(305, &replies)).await;
    let inbox = broker.inbox(&replies).await;
    let (reply, _) = next_reply(&*inbox, Duration::from_secs(10))
        .await
        .expect("answered within seconds, not after 60 s");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(reply["id"], 305);
    assert_eq!(reply["result"]["content"][0]["text"], "2", "{reply}");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");
    let failed: Vec<bool> = outbox
        .finals(&replies, &json!(305))
        .iter()
        .map(|a| a.failed)
        .collect();
    assert_eq!(failed, [true, false], "failed, then replayed");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request deleted"
    );
    fx.stop().await;
}

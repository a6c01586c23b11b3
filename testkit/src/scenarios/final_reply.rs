//! Scenarios of a final response the server cannot send: a passing failure
//! leaves the request for redelivery, which is answered from the replay
//! cache; a permanent one removes the request; one on the last delivery
//! `dead_letter` allows dead-letters it. The failures are injected by a
//! [`FaultyOutbox`] under the server.

use super::*;

/// Short, so that a redelivery comes quickly.
const VISIBILITY: Duration = Duration::from_secs(1);

/// A fixture whose server sends through a [`FaultyOutbox`], and a reply
/// queue for raw requests.
async fn start(broker: &dyn TestBroker) -> (Fixture<'_>, Arc<FaultyOutbox>, String) {
    let outbox = FaultyOutbox::new(broker.outbox());
    let spec = QueueSpec {
        visibility_timeout: Some(VISIBILITY),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::start_with_outbox(broker, spec, outbox.clone(), |b| b).await;
    let replies = fx.queue("final-replies").await;
    (fx, outbox, replies)
}

/// `add(a, b)` as request `id`, answered to `replies`.
fn add_request(id: u64, replies: &str) -> QueueMessage {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"add","arguments":{"a":2,"b":3}}});
    QueueMessage::new(body.to_string())
        .with_string("ReplyTo", replies)
        .with_string("ClientId", "final-reply-client")
}

/// Waits until the request queue is empty (nothing visible or in flight).
pub(super) async fn drained(broker: &dyn TestBroker, requests: &str) -> bool {
    for _ in 0..150 {
        if broker.depth(requests).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A final response that fails to send once for a passing reason: the
/// request is redelivered and answered from the replay cache, so the tool
/// runs once and the caller gets its result.
pub async fn final_reply_failing_once_is_replayed(broker: &dyn TestBroker) {
    let (fx, outbox, replies) = start(broker).await;
    outbox.fail_final(&replies, json!(61), Failure::Transient, 1);
    fx.inject(add_request(61, &replies)).await;
    let inbox = broker.inbox(&replies).await;
    let (reply, _) = next_reply(&*inbox, Duration::from_secs(20))
        .await
        .expect("answered on the redelivery");
    assert_eq!(reply["id"], 61);
    assert_eq!(reply["result"]["content"][0]["text"], "5", "{reply}");
    assert!(drained(broker, &fx.requests).await, "request deleted");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");
    let finals = outbox.finals(&replies, &json!(61));
    let failed: Vec<bool> = finals.iter().map(|a| a.failed).collect();
    assert_eq!(failed, [true, false], "sent twice: failed, then replayed");
    assert_eq!(finals[0].body, finals[1].body, "the replay is the response");
    fx.stop().await;
}

/// A final response the reply address refuses for good: the request is
/// removed (not redelivered, not run again) and nothing is answered.
pub async fn final_reply_refused_for_good_removes_the_request(broker: &dyn TestBroker) {
    let (fx, outbox, replies) = start(broker).await;
    outbox.fail_final(&replies, json!(62), Failure::Permanent, 1);
    fx.inject(add_request(62, &replies)).await;
    let ran = eventually(Duration::from_secs(15), || {
        fx.stats.calls.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(ran, "the request reached the tool");
    assert!(drained(broker, &fx.requests).await, "request removed");
    // Past its visibility timeout: a request left on the queue would have
    // been redelivered and run again by now.
    let inbox = broker.inbox(&replies).await;
    let reply = next_reply(&*inbox, VISIBILITY * 3).await;
    assert!(reply.is_none(), "nothing was answered: {reply:?}");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");
    assert_eq!(broker.depth(&fx.requests).await, 0);
    assert_eq!(outbox.finals(&replies, &json!(62)).len(), 1, "one attempt");
    fx.stop().await;
}

/// With `dead_letter(address, 1)`, a final response that cannot be sent on
/// the one allowed delivery dead-letters the request with the reason, and
/// its caller is told.
pub async fn final_reply_failing_on_the_last_delivery_dead_letters(broker: &dyn TestBroker) {
    let (mut fx, outbox, replies) = start(broker).await;
    let dead_letters = fx.queue("final-dead-letters").await;
    fx.stop_server().await;
    let address = dead_letters.clone();
    fx.start_server(move |b| b.dead_letter(address, 1)).await;
    outbox.fail_final(&replies, json!(63), Failure::Transient, 1);
    fx.inject(add_request(63, &replies)).await;

    let inbox = broker.inbox(&dead_letters).await;
    let (body, message) = next_reply(&*inbox, Duration::from_secs(15))
        .await
        .expect("the request reached the dead-letter queue");
    assert_eq!(body["id"], 63);
    assert_eq!(body["method"], "tools/call");
    let reason = message.attribute("DeadLetterReason").unwrap_or_default();
    assert!(
        reason.contains("final response could not be sent on delivery 1"),
        "{reason}"
    );
    assert_eq!(message.attribute("ReceiveCount"), Some("1"));

    let replies_inbox = broker.inbox(&replies).await;
    let (told, _) = next_reply(&*replies_inbox, Duration::from_secs(10))
        .await
        .expect("the caller is told");
    assert_eq!(told["id"], 63);
    assert_eq!(told["error"]["code"], -32603);
    let text = told["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("dead-lettered"), "{text}");
    assert!(drained(broker, &fx.requests).await, "request removed");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");
    fx.stop().await;
}

/// With `dead_letter(address, 2)`, a reply address that stays down for a
/// passing reason: the response fails on the run (delivery 1), its replay
/// fails on delivery 2, the last allowed, so the request is dead-lettered
/// there, once, with the reason; the notice failing too ends it on the next
/// delivery instead of bringing the request back until its kept response
/// expires. The tool ran once and the request queue is drained.
pub async fn final_reply_failing_on_every_delivery_is_dead_lettered_once(broker: &dyn TestBroker) {
    let (mut fx, outbox, replies) = start(broker).await;
    let dead_letters = fx.queue("down-dead-letters").await;
    fx.stop_server().await;
    let address = dead_letters.clone();
    fx.start_server(move |b| b.dead_letter(address, 2)).await;
    outbox.fail_final(&replies, json!(64), Failure::Transient, usize::MAX);
    fx.inject(add_request(64, &replies)).await;

    let inbox = broker.inbox(&dead_letters).await;
    let (body, message) = next_reply(&*inbox, Duration::from_secs(20))
        .await
        .expect("the request reached the dead-letter queue");
    assert_eq!(body["id"], 64);
    let reason = message.attribute("DeadLetterReason").unwrap_or_default();
    assert!(
        reason.contains("final response could not be sent on delivery 2"),
        "{reason}"
    );
    assert_eq!(message.attribute("ReceiveCount"), Some("2"));
    assert!(drained(broker, &fx.requests).await, "request removed");
    // The run's response, its replay, the notice, and the notice replayed
    // once more on the next delivery: then nothing.
    let finals = outbox.finals(&replies, &json!(64)).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        outbox.finals(&replies, &json!(64)).len(),
        finals,
        "no more attempts"
    );
    assert!(finals <= 4, "{finals} attempts");
    let moves = outbox
        .destinations()
        .iter()
        .filter(|address| **address == dead_letters)
        .count();
    assert_eq!(moves, 1, "dead-lettered once");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");
    fx.stop().await;
}

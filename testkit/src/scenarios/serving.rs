//! Scenarios of a server at work: bad input, the heartbeat, graceful
//! shutdown and a reply queue shared by two clients.

use super::*;

/// Bad input: every case is answered when it can be, removed, and leaves
/// the server serving.
pub async fn bad_input(broker: &dyn TestBroker) {
    // Records every address the server tries to send to; the refused
    // address is never forwarded, so it reaches nothing outside the test.
    let evil = "https://evil.example/q/x";
    let outbox = FaultyOutbox::new(broker.outbox());
    outbox.refuse(evil);
    let mut fx =
        Fixture::start_with_outbox(broker, QueueSpec::default(), outbox.clone(), |b| b).await;
    let replies = fx.queue("raw-replies").await;
    let inbox = broker.inbox(&replies).await;
    let within = Duration::from_secs(10);

    // Not JSON: -32700 with a null id.
    fx.inject(QueueMessage::new("{this is not json").with_string("ReplyTo", &replies))
        .await;
    let (reply, _) = next_reply(&*inbox, within)
        .await
        .expect("parse error reply");
    assert_eq!(reply["error"]["code"], -32700);
    assert_eq!(reply["id"], Value::Null);

    // JSON but not JSON-RPC: -32600 with the request's id.
    fx.inject(
        QueueMessage::new(r#"{"id": 41, "method": "tools/list"}"#).with_string("ReplyTo", &replies),
    )
    .await;
    let (reply, _) = next_reply(&*inbox, within)
        .await
        .expect("invalid request reply");
    assert_eq!(reply["error"]["code"], -32600);
    assert_eq!(reply["id"], 41);

    // A forged session id: refused, but not correlated to any call (the
    // id it claims could be another client's): `id` null, the claimed id
    // only shown in the error's data.
    let forged = json!({"jsonrpc":"2.0","id":42,"method":"tools/list","params":{}});
    fx.inject(
        QueueMessage::new(forged.to_string())
            .with_string("ReplyTo", &replies)
            .with_string("SessionId", "v1.AAAA.eyJyIjoieCJ9.AAAA"),
    )
    .await;
    let (reply, _) = next_reply(&*inbox, within).await.expect("session refusal");
    assert_eq!(reply["error"]["code"], -32600);
    assert_eq!(reply["id"], Value::Null, "a refusal is not correlated");
    assert_eq!(reply["error"]["data"]["requestId"], 42);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("session")
    );

    // A reply address outside the allow-list, and none at all: nothing is
    // sent, the messages are removed.
    let list = json!({"jsonrpc":"2.0","id":43,"method":"tools/list","params":{}});
    fx.inject(QueueMessage::new(list.to_string()).with_string("ReplyTo", evil))
        .await;
    fx.inject(QueueMessage::new(list.to_string())).await;

    // A reply larger than the reply queue accepts: an error saying so.
    let spec = QueueSpec {
        max_message_size: Some(1024),
        ..QueueSpec::default()
    };
    let small = broker.create_queue_with("small-replies", spec).await;
    fx.queues.push(small.clone());
    let small_inbox = broker.inbox(&small).await;
    let big = json!({"jsonrpc":"2.0","id":44,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"x".repeat(2000)}}});
    fx.inject(QueueMessage::new(big.to_string()).with_string("ReplyTo", &small))
        .await;
    let (reply, _) = next_reply(&*small_inbox, within)
        .await
        .expect("size error reply");
    assert_eq!(reply["id"], 44);
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    // Both sizes: the response's as the broker counted it (the first send
    // to the small queue), and the queue's limit.
    let size = outbox.finals(&small, &json!(44))[0].size;
    assert!(size > 2000, "the response was {size} bytes");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("response of {size} bytes")),
        "{reply}"
    );
    assert!(message.contains("limit of 1024 bytes"), "{reply}");

    // Nothing more arrived (the refused ones were not answered anywhere we
    // can see) and the server still serves.
    assert!(
        next_reply(&*inbox, Duration::from_millis(500))
            .await
            .is_none()
    );
    let transport = fx.transport().await;
    let client_replies = transport.reply_address().to_owned();
    let client = ().serve(transport).await.expect("client connects");
    let echoed = client
        .call_tool(call("echo", json!({"text": "healthy"})))
        .await
        .expect("server still serves");
    assert_eq!(text_of(&echoed), "healthy");
    client.cancel().await.expect("close");
    let requests = fx.requests.clone();
    let drained = {
        let mut depth = usize::MAX;
        for _ in 0..100 {
            depth = broker.depth(&requests).await;
            if depth == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        depth
    };
    assert_eq!(
        drained, 0,
        "every bad message was removed from the request queue"
    );
    // With every message handled: the server tried no address but those
    // the requests named and the allow-list admits, and sent nothing at
    // all for the requests it refused (id 43).
    let attempts = outbox.attempts();
    for attempt in &attempts {
        assert!(
            [&replies, &small, &client_replies].contains(&&attempt.address),
            "sent to a refused address: {}",
            attempt.address
        );
        assert!(
            !attempt.is_final_of(&json!(43)),
            "a refused request was answered to {}",
            attempt.address
        );
    }
    fx.stop().await;
}

/// A handler running several times the visibility timeout is not
/// redelivered (heartbeat), runs once, and its request is deleted after.
pub async fn heartbeat_keeps_long_calls_hidden(broker: &dyn TestBroker) {
    let visibility = Duration::from_secs(2);
    let spec = QueueSpec {
        visibility_timeout: Some(visibility),
        ..QueueSpec::default()
    };
    let (mut fx, deliveries) = Fixture::start_logged(broker, spec).await;
    let client = fx.client().await;
    let result = client
        .call_tool(call("sleep", json!({"ms": 5_000})))
        .await
        .expect("long call");
    assert_eq!(text_of(&result), "slept 5000 ms");
    // Wait past another visibility period: a request that was not kept
    // hidden would be redelivered and run again now.
    tokio::time::sleep(visibility + Duration::from_secs(1)).await;
    // Counted per delivery: the replay cache would answer a redelivery
    // without running the tool, hiding it from the counters below.
    assert_eq!(
        deliveries.deliveries_of("\"sleep\""),
        [1],
        "the long call's request was delivered exactly once"
    );
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        1,
        "ran exactly once"
    );
    assert_eq!(fx.stats.sleeps_completed.load(Ordering::Relaxed), 1);
    assert_eq!(broker.depth(&fx.requests).await, 0, "request deleted");
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// Shutdown lets an in-flight call finish within the grace period; a call
/// that outlives it is released and another replica answers it.
pub async fn graceful_shutdown(broker: &dyn TestBroker) {
    let mut fx = Fixture::start_with(broker, |b| b.shutdown_grace(Duration::from_secs(5))).await;
    let client = fx.client().await;
    let stats = fx.stats.clone();

    // Finishes within the grace period.
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.call_tool(call("sleep", json!({"ms": 800}))).await })
    };
    assert!(
        eventually(Duration::from_secs(10), || stats
            .calls
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    fx.stop_server().await;
    let result = pending
        .await
        .expect("task")
        .expect("answered during shutdown");
    assert_eq!(text_of(&result), "slept 800 ms");

    // Outlives a short grace period: released, then served by a new replica.
    fx.start_server(|b| b.shutdown_grace(Duration::from_millis(300)))
        .await;
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.call_tool(call("sleep", json!({"ms": 4_000}))).await })
    };
    assert!(
        eventually(Duration::from_secs(10), || stats
            .calls
            .load(Ordering::Relaxed)
            == 2)
        .await
    );
    let stopping = tokio::time::Instant::now();
    fx.stop_server().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "grace period bounded the stop"
    );
    assert_eq!(
        stats.sleeps_completed.load(Ordering::Relaxed),
        1,
        "second call was stopped"
    );
    fx.start_server(|b| b).await;
    let result = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the released call is answered by the new replica")
        .expect("task")
        .expect("call result");
    assert_eq!(text_of(&result), "slept 4000 ms");
    assert_eq!(
        stats.calls.load(Ordering::Relaxed),
        3,
        "the released call ran again"
    );
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// Two clients sharing one reply queue each get only their own replies:
/// a client hands back (releases) what is stamped for another.
pub async fn shared_reply_queue(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let shared = fx.queue("shared-replies").await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let transport = QueueClientTransport::builder(&fx.requests)
            .wait(Duration::from_secs(1))
            .reply_address(shared.clone())
            .build(broker.inbox(&shared).await, broker.outbox());
        clients.push(().serve(transport).await.expect("client on a shared queue"));
    }
    let runs = clients.iter().enumerate().map(|(c, client)| async move {
        for i in 0..10 {
            let text = format!("client {c} call {i}");
            let result = client
                .call_tool(call("echo", json!({"text": text})))
                .await
                .expect("echo on a shared reply queue");
            assert_eq!(text_of(&result), text);
        }
    });
    futures::future::join_all(runs).await;
    for client in clients {
        client.cancel().await.expect("close");
    }
    fx.stop().await;
}

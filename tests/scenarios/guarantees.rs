//! Scenarios of the delivery guarantees: order of a request's messages,
//! duplicates, poison requests and signed messages.

use super::*;

/// Over the transport itself (below rmcp, which handles notifications on
/// separate tasks): every progress notification of a call is handed over
/// before the call's response, for several concurrent calls, whatever order
/// the broker delivers them in.
pub async fn notifications_precede_the_response(broker: &dyn TestBroker) {
    use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
    use rmcp::transport::Transport;

    let mut fx = Fixture::start_with(broker, |b| b.max_in_flight(16)).await;
    let mut transport = fx.transport().await;
    let calls: u64 = 8;
    for id in 1..=calls {
        let request: ClientJsonRpcMessage = serde_json::from_value(json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"ms": 100},
                       "_meta": {"progressToken": format!("p{id}")}},
        }))
        .expect("a request");
        transport.send(request).await.expect("send");
    }
    // Per call: progress notifications seen, and whether its response came.
    let mut progress = std::collections::HashMap::<String, usize>::new();
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered < calls {
        let message = tokio::time::timeout_at(deadline, transport.receive())
            .await
            .expect("every call answered in time")
            .expect("transport open");
        let value = serde_json::to_value(&message).expect("serializable");
        match message {
            ServerJsonRpcMessage::Notification(_) => {
                let token = value["params"]["progressToken"]
                    .as_str()
                    .unwrap_or_default();
                *progress.entry(token.to_owned()).or_default() += 1;
            }
            ServerJsonRpcMessage::Response(_) => {
                let token = format!("p{}", value["id"]);
                assert_eq!(
                    progress.get(&token).copied().unwrap_or(0),
                    4,
                    "all 4 progress notifications of {token} precede its response"
                );
                answered += 1;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    transport.close().await.expect("close");
    fx.stop().await;
}

/// A response that arrives before notifications of its request (as standard
/// queues and SNS may deliver them) is held until they arrive.
pub async fn early_response_waits_for_its_notifications(broker: &dyn TestBroker) {
    use asyncmcp::wire::{self, Headers};
    use rmcp::model::ServerJsonRpcMessage;
    use rmcp::transport::Transport;

    let mut fx = Fixture::start(broker).await;
    let mut transport = fx.transport().await;
    let reply_address = transport.reply_address().to_owned();
    let client_id = transport.client_id().to_owned();
    let numbered = |sequence: u64| Headers {
        client_id: Some(client_id.clone()),
        request_id: Some("7".into()),
        sequence: Some(sequence),
        ..Headers::default()
    };
    let progress = |n: u64| {
        json!({"jsonrpc":"2.0","method":"notifications/progress",
               "params":{"progressToken":"t","progress":n}})
    };
    let response = json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}});
    // The response (third message of request 7) is sent first, then the
    // notifications, each after the previous one has been received.
    let outbox = broker.outbox();
    let send = |body: Value, sequence: u64| {
        let message = wire::encode(&body, &numbered(sequence)).expect("encode");
        let outbox = outbox.clone();
        let address = reply_address.clone();
        async move { outbox.send(&address, message).await.expect("send") }
    };
    send(response, 3).await;
    let early = tokio::time::timeout(Duration::from_millis(300), transport.receive()).await;
    assert!(early.is_err(), "the response is held: {early:?}");
    send(progress(1), 1).await;
    send(progress(2), 2).await;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(10), transport.receive())
            .await
            .expect("delivered")
            .expect("open");
        kinds.push(match message {
            ServerJsonRpcMessage::Notification(_) => "notification",
            ServerJsonRpcMessage::Response(_) => "response",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["notification", "notification", "response"]);
    transport.close().await.expect("close");
    fx.stop().await;
}

/// A request delivered twice runs its tool once, and both deliveries are
/// answered with the same result: a client sending it again after the
/// answer, and a redelivery while the first delivery still runs (left on
/// the queue, it comes back after its visibility timeout and is replayed).
pub async fn duplicates_run_once(broker: &dyn TestBroker) {
    let spec = QueueSpec {
        visibility_timeout: Some(Duration::from_secs(2)),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::start_on(broker, spec, |b| b).await;
    let replies = fx.queue("dup-replies").await;
    let inbox = broker.inbox(&replies).await;
    let within = Duration::from_secs(15);
    let request = |id: u32, tool: &str, arguments: Value| {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":tool,"arguments":arguments}});
        QueueMessage::new(body.to_string())
            .with_string("ReplyTo", &replies)
            .with_string("ClientId", "duplicating-client")
    };

    let add = request(77, "add", json!({"a": 2, "b": 3}));
    fx.inject(add.clone()).await;
    let (first, _) = next_reply(&*inbox, within).await.expect("first answer");
    fx.inject(add).await;
    let (second, _) = next_reply(&*inbox, within).await.expect("replayed answer");
    assert_eq!(first["id"], 77);
    assert_eq!(first, second, "the duplicate gets the same result");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");

    let sleep = request(78, "sleep", json!({"ms": 1000}));
    fx.inject(sleep.clone()).await;
    fx.inject(sleep).await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let (reply, _) = next_reply(&*inbox, within)
            .await
            .expect("both deliveries answered");
        if reply.get("method").is_none() {
            answers.push(reply);
        }
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["id"], 78);
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 2, "sleep ran once");
    fx.stop().await;
}

/// A request whose earlier deliveries all ended without an answer (here:
/// taken twice by workers that died) is not run again once over the
/// server's `dead_letter` receive count: it goes to the dead-letter queue
/// with the reason and its receive count, its caller gets an error saying
/// so, and the queue keeps flowing.
pub async fn poison_requests_are_dead_lettered_with_a_reason(broker: &dyn TestBroker) {
    let spec = QueueSpec {
        visibility_timeout: Some(Duration::from_secs(1)),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::start_on(broker, spec, |b| b).await;
    fx.stop_server().await;
    let dead_letters = fx.queue("dead-letters").await;
    let replies = fx.queue("poison-replies").await;
    let poison = json!({"jsonrpc":"2.0","id":90,"method":"tools/call",
        "params":{"name":"add","arguments":{"a":1,"b":1}}});
    fx.inject(
        QueueMessage::new(poison.to_string())
            .with_string("ReplyTo", &replies)
            .with_string("ClientId", "poisoning-client"),
    )
    .await;
    let requests = broker.inbox(&fx.requests).await;
    for attempt in 1..=2 {
        // A worker takes the request and dies: it is never settled.
        let mut taken = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while taken.is_empty() && tokio::time::Instant::now() < deadline {
            taken = requests
                .receive(1, Duration::from_secs(1))
                .await
                .expect("receive");
        }
        assert_eq!(taken.len(), 1, "delivery {attempt}");
        assert_eq!(taken[0].receive_count, attempt);
    }

    let dead_letter_queue = dead_letters.clone();
    fx.start_server(move |b| b.dead_letter(dead_letter_queue, 2))
        .await;
    let inbox = broker.inbox(&dead_letters).await;
    let (body, message) = next_reply(&*inbox, Duration::from_secs(15))
        .await
        .expect("the request reached the dead-letter queue");
    assert_eq!(body["id"], 90);
    let reason = message.attribute("DeadLetterReason").unwrap_or_default();
    assert!(reason.contains("delivered 3 times"), "{reason}");
    assert_eq!(message.attribute("ReceiveCount"), Some("3"));
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 0, "never run");

    // Its caller is told, with the request's id.
    let replies_inbox = broker.inbox(&replies).await;
    let (told, _) = next_reply(&*replies_inbox, Duration::from_secs(10))
        .await
        .expect("the caller is told");
    assert_eq!(told["id"], 90);
    assert_eq!(told["error"]["code"], -32603);
    let text = told["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("dead-lettered"), "{text}");

    // The queue keeps flowing.
    let client = fx.client().await;
    let sum = client
        .call_tool(call("add", json!({"a": 2, "b": 3})))
        .await
        .expect("add");
    assert_eq!(text_of(&sum), "5");
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// With signing required, a server serves clients whose requests verify
/// under its current or previous key (rotation), and refuses unsigned,
/// tampered and foreign-signed requests without running them.
pub async fn signed_messages(broker: &dyn TestBroker) {
    use asyncmcp::wire::signing::{Signing, SigningKeys};
    use asyncmcp::wire::{self, Headers};

    let (old, new) = (vec![1u8; 32], vec![2u8; 32]);
    let server_keys = SigningKeys::new(new.clone(), Some(old.clone())).expect("keys");
    let keys = server_keys.clone();
    let mut fx = Fixture::start_with(broker, move |b| b.signing(keys, true)).await;

    // A client still signing with the old key (and verifying the new one),
    // and one signing with the new key.
    let clients = [
        SigningKeys::new(old.clone(), Some(new.clone())).expect("keys"),
        server_keys.clone(),
    ];
    for keys in clients {
        let replies = fx.queue("signed-replies").await;
        let transport = QueueClientTransport::new(
            broker.inbox(&replies).await,
            broker.outbox(),
            QueueClientConfig {
                wait: Duration::from_secs(1),
                reply_address: Some(replies),
                signing: Some(Signing::new(keys)),
                ..QueueClientConfig::new(&fx.requests)
            },
        );
        let client = ().serve(transport).await.expect("signed client connects");
        let echoed = client
            .call_tool(call("echo", json!({"text": "signed"})))
            .await
            .expect("signed call");
        assert_eq!(text_of(&echoed), "signed");
        client.cancel().await.expect("close");
    }
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 2);

    let replies = fx.queue("unsigned-replies").await;
    let inbox = broker.inbox(&replies).await;
    let request = |id: u32| {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"add","arguments":{"a":1,"b":1}}});
        let headers = Headers {
            reply_to: Some(replies.clone()),
            client_id: Some("signing-test".into()),
            ..Headers::default()
        };
        wire::encode(&body, &headers).expect("encode")
    };
    let unsigned = request(91);
    let mut tampered = request(92);
    server_keys.sign(&mut tampered);
    tampered.body = tampered.body.replace("\"a\":1", "\"a\":100");
    let mut foreign = request(93);
    SigningKeys::new(vec![3u8; 32], None)
        .expect("keys")
        .sign(&mut foreign);
    for message in [unsigned, tampered, foreign] {
        fx.inject(message).await;
        let (reply, _) = next_reply(&*inbox, Duration::from_secs(10))
            .await
            .expect("a refusal");
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
        let text = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains("signature"), "{text}");
    }
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        2,
        "no refused request ran"
    );
    fx.stop().await;
}

/// A signed request sent longer ago than the server's
/// `signature_max_age`, or claiming a time far ahead, is refused and not
/// run: a captured request cannot be sent again later.
pub async fn stale_signed_requests_are_refused(broker: &dyn TestBroker) {
    use asyncmcp::queue::AttributeValue;
    use asyncmcp::wire::signing::SigningKeys;
    use asyncmcp::wire::{self, Headers};

    let keys = SigningKeys::new(vec![5u8; 32], None).expect("keys");
    let server_keys = keys.clone();
    let mut fx = Fixture::start_with(broker, move |b| {
        b.signing(server_keys, true)
            .signature_max_age(Some(Duration::from_secs(60)))
    })
    .await;
    let replies = fx.queue("fresh-replies").await;
    let inbox = broker.inbox(&replies).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let signed_at = |id: u32, sent: f64| {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"add","arguments":{"a":1,"b":1}}});
        let headers = Headers {
            reply_to: Some(replies.clone()),
            client_id: Some("freshness-test".into()),
            ..Headers::default()
        };
        let mut message = wire::encode(&body, &headers).expect("encode");
        message.attributes.insert(
            wire::attr::TIMESTAMP.to_owned(),
            AttributeValue::Number(format!("{sent:.3}")),
        );
        keys.sign(&mut message);
        message
    };
    fx.inject(signed_at(61, now - 5.0)).await;
    let (fresh, _) = next_reply(&*inbox, Duration::from_secs(10))
        .await
        .expect("a fresh request is answered");
    assert_eq!(fresh["id"], 61, "{fresh}");
    assert_eq!(fresh["result"]["content"][0]["text"], "2", "{fresh}");
    for (id, sent, why) in [(62, now - 120.0, "ago"), (63, now + 600.0, "future")] {
        fx.inject(signed_at(id, sent)).await;
        let (refusal, _) = next_reply(&*inbox, Duration::from_secs(10))
            .await
            .expect("a refusal");
        assert_eq!(refusal["error"]["code"], -32600, "{refusal}");
        assert_eq!(refusal["error"]["data"]["requestId"], id, "{refusal}");
        let text = refusal["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(why), "{text}");
    }
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        1,
        "stale ones never ran"
    );
    fx.stop().await;
}

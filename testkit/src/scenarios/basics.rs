//! The basic scenarios: tools listed and called, error results and errors,
//! progress, cancellation, timeouts, concurrency, protocol versions, bad
//! input, the heartbeat, graceful shutdown and a shared reply queue.

use super::*;

/// tools/list and tools/call work over a legacy (initialize) session.
pub async fn list_and_call(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let client = fx.client().await;
    let tools = client.list_all_tools().await.expect("list tools");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "fail", "hash", "roots", "sleep"]);
    let echoed = client
        .call_tool(call("echo", json!({"text": "hi there"})))
        .await
        .expect("echo");
    assert_eq!(text_of(&echoed), "hi there");
    let sum = client
        .call_tool(call("add", json!({"a": 2, "b": 3})))
        .await
        .expect("add");
    assert_eq!(text_of(&sum), "5");
    let hashed = client
        .call_tool(call("hash", json!({"data": "abc", "rounds": 1})))
        .await
        .expect("hash");
    assert_eq!(
        text_of(&hashed),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// An `isError` tool result is a result; an unknown tool is a JSON-RPC error.
pub async fn is_error_result_vs_jsonrpc_error(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let client = fx.client().await;
    let failed = client
        .call_tool(call("fail", json!({"message": "no such invoice"})))
        .await
        .expect("an isError result is still a result");
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), "no such invoice");
    let error = client
        .call_tool(call("no_such_tool", json!({})))
        .await
        .expect_err("unknown tool is a JSON-RPC error");
    match error {
        ServiceError::McpError(data) => {
            assert_eq!(data.code, rmcp::model::ErrorCode::INVALID_PARAMS);
            assert!(data.message.contains("not found"), "{}", data.message)
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// A client that records the progress it is sent.
#[derive(Clone, Default)]
pub struct ProgressRecorder {
    /// The progress values, in the order they arrived.
    pub seen: Arc<std::sync::Mutex<Vec<f64>>>,
}

impl rmcp::ClientHandler for ProgressRecorder {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(params.progress);
        }
    }
}

/// Progress notifications of a call reach the caller.
pub async fn progress_is_delivered(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let recorder = ProgressRecorder::default();
    let transport = fx.transport().await;
    let client = recorder.clone().serve(transport).await.expect("connect");
    let result = client
        .call_tool(call("sleep", json!({"ms": 400})))
        .await
        .expect("sleep");
    assert_eq!(text_of(&result), "slept 400 ms");
    let seen = recorder.seen.clone();
    let all = eventually(Duration::from_secs(5), || {
        seen.lock().map(|s| s.len() == 4).unwrap_or(false)
    })
    .await;
    let seen = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(all, "expected 4 progress notifications, saw {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted, [1.0, 2.0, 3.0, 4.0]);
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// A client cancellation stops the running handler; nothing is answered.
pub async fn cancellation_stops_the_handler(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let client = fx.client().await;
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call("sleep", json!({"ms": 60_000})))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    let started = eventually(Duration::from_secs(10), || {
        fx.stats.calls.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(started, "the call reached the server");
    handle.cancel(Some("test".into())).await.expect("cancel");
    let stats = fx.stats.clone();
    let stopped = eventually(Duration::from_secs(10), || {
        stats.sleeps_cancelled.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(stopped, "the handler saw the cancellation");
    assert_eq!(fx.stats.sleeps_completed.load(Ordering::Relaxed), 0);
    // The session still works after a cancellation.
    let echoed = client
        .call_tool(call("echo", json!({"text": "still here"})))
        .await
        .expect("echo after cancel");
    assert_eq!(text_of(&echoed), "still here");
    client.cancel().await.expect("close");

    // The same by hand, on a reply queue only this test reads: rmcp's
    // client drops an answer to a call it cancelled, so only here would
    // one be seen.
    let replies = fx.queue("cancel-replies").await;
    let inbox = broker.inbox(&replies).await;
    let raw = |body: Value| {
        QueueMessage::new(body.to_string())
            .with_string("ReplyTo", &replies)
            .with_string("ClientId", "raw-cancelling-client")
    };
    let sleep = json!({"jsonrpc":"2.0","id":71,"method":"tools/call",
        "params":{"name":"sleep","arguments":{"ms":60_000}}});
    fx.inject(raw(sleep)).await;
    let started = eventually(Duration::from_secs(10), || {
        stats.calls.load(Ordering::Relaxed) == 3
    })
    .await;
    assert!(started, "the raw call reached the server");
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":71,"reason":"test"}});
    fx.inject(raw(cancel)).await;
    let stopped = eventually(Duration::from_secs(10), || {
        stats.sleeps_cancelled.load(Ordering::Relaxed) == 2
    })
    .await;
    assert!(stopped, "the raw call's handler saw the cancellation");
    // The call asked for no progress, so nothing at all is due; an answer
    // would be sent the moment the handler stopped.
    let answer = next_reply(&*inbox, Duration::from_secs(3)).await;
    assert!(answer.is_none(), "answered after cancelling: {answer:?}");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "the cancelled request was removed"
    );
    fx.stop().await;
}

/// A client-side timeout fails the call; the server's deadline answers a
/// clear JSON-RPC error and cancels the handler.
pub async fn timeouts(broker: &dyn TestBroker) {
    let mut fx =
        Fixture::start_with(broker, |b| b.request_timeout(Duration::from_millis(500))).await;
    let client = fx.client().await;
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call("sleep", json!({"ms": 30_000})))),
            PeerRequestOptions::with_timeout(Duration::from_millis(200)),
        )
        .await
        .expect("send");
    match handle.await_response().await {
        Err(ServiceError::Timeout { .. }) => {}
        other => panic!("expected a client timeout, got {other:?}"),
    }
    // Stopped by the cancellation the client sends on its timeout, or else
    // by the server's deadline: counted before the second call, so that
    // each call's stop is seen on its own.
    let stats = fx.stats.clone();
    let cancelled = |n: usize| {
        let stats = stats.clone();
        eventually(Duration::from_secs(10), move || {
            stats.sleeps_cancelled.load(Ordering::Relaxed) == n
        })
    };
    assert!(cancelled(1).await, "the first call's handler was stopped");
    let error = client
        .call_tool(call("sleep", json!({"ms": 30_000})))
        .await
        .expect_err("the server deadline fails the call");
    match error {
        ServiceError::McpError(data) => {
            assert_eq!(data.code.0, -32001);
            assert!(data.message.contains("timed out"), "{}", data.message);
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    assert!(cancelled(2).await, "the deadline cancelled the handler");
    assert_eq!(stats.calls.load(Ordering::Relaxed), 2, "each call ran once");
    assert_eq!(stats.sleeps_completed.load(Ordering::Relaxed), 0);
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// 50 concurrent calls from one client, and 5 clients at once, each get
/// their own answers.
pub async fn concurrency(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let client = fx.client().await;
    let calls = (0..50).map(|i| {
        let client = client.clone();
        async move {
            let text = format!("call-{i}");
            let result = client
                .call_tool(call("echo", json!({"text": text})))
                .await
                .expect("echo");
            assert_eq!(text_of(&result), text);
        }
    });
    futures::future::join_all(calls).await;
    client.cancel().await.expect("close");

    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(fx.client().await);
    }
    let runs = clients.iter().enumerate().map(|(c, client)| async move {
        for i in 0..10 {
            let result = client
                .call_tool(call("add", json!({"a": c * 100, "b": i})))
                .await
                .expect("add");
            assert_eq!(text_of(&result), (c * 100 + i).to_string());
        }
    });
    futures::future::join_all(runs).await;
    for client in clients {
        client.cancel().await.expect("close");
    }
    fx.stop().await;
}

/// The 2026-07-28 (discover, no initialize) lifecycle and a 2025-era
/// initialize both work against the same server.
pub async fn protocol_versions(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;

    let transport = fx.transport().await;
    let modern = rmcp::service::serve_client_with_lifecycle(
        (),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("discover lifecycle");
    let echoed = modern
        .call_tool(call("echo", json!({"text": "stateless"})))
        .await
        .expect("echo on 2026-07-28");
    assert_eq!(text_of(&echoed), "stateless");
    modern.cancel().await.expect("close");

    let transport = fx.transport().await;
    let params = InitializeRequestParams::new(
        ClientCapabilities::default(),
        Implementation::new("legacy-test", "1.0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_03_26);
    let legacy = params
        .serve(transport)
        .await
        .expect("initialize 2025-03-26");
    let version = legacy.peer_info().map(|i| i.protocol_version.clone());
    assert_eq!(version, Some(ProtocolVersion::V_2025_03_26));
    let sum = legacy
        .call_tool(call("add", json!({"a": 1.5, "b": 2})))
        .await
        .expect("add on 2025-03-26");
    assert_eq!(text_of(&sum), "3.5");
    legacy.cancel().await.expect("close");
    fx.stop().await;
}

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
        let transport = QueueClientTransport::new(
            broker.inbox(&shared).await,
            broker.outbox(),
            QueueClientConfig {
                wait: Duration::from_secs(1),
                reply_address: Some(shared.clone()),
                ..QueueClientConfig::new(&fx.requests)
            },
        );
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

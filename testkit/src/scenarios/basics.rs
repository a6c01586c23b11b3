//! The basic scenarios of a call: tools listed and called, error results and
//! errors, progress, cancellation, timeouts, concurrency and protocol
//! versions.

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

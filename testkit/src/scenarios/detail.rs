//! What attributes a server's replies carry (docs/wire.md, "Detail"): only
//! what the client reads when the request came from an asyncmcp client
//! (it names `ReplyTo`), every attribute of the format for a client that
//! does not (Python asyncmcp's), and every one for all when the server is
//! set to full detail. Checked on the raw messages, on each broker: SNS
//! carries attributes in its own envelope.

use super::*;

/// The attribute names of `message`, sorted.
fn names(message: &QueueMessage) -> Vec<String> {
    let mut names: Vec<String> = message.attributes.keys().cloned().collect();
    names.sort();
    names
}

/// A `tools/call` with `id`; `sleep` reports 4 progress notifications.
fn tool_call(id: u32, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":arguments,"_meta":{"progressToken":id}}})
}

/// A legacy `initialize` naming `replies` in its parameters, as Python
/// asyncmcp 0.2.1 sends it.
fn initialize(replies: &str) -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-03-26","capabilities":{},
        "clientInfo":{"name":"detail","version":"1"},
        "response_queue_url":replies,"_meta":{"responseQueueUrl":replies}}})
}

/// The next `count` raw replies on `inbox`, in the order they came.
async fn replies(inbox: &dyn Inbox, count: usize) -> Vec<(Value, QueueMessage)> {
    let mut got = Vec::new();
    while got.len() < count {
        let reply = next_reply(inbox, Duration::from_secs(20)).await;
        let Some(reply) = reply else {
            panic!("{} of {count} replies came: {got:?}", got.len());
        };
        got.push(reply);
    }
    got
}

/// Lean replies to an asyncmcp client, full ones to a client that names no
/// `ReplyTo`, and full ones to everybody from a server set to full detail.
pub async fn reply_attributes_follow_the_peer(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let ours = fx.queue("lean-replies").await;
    let ours_inbox = broker.inbox(&ours).await;
    let asyncmcp_style = |body: &Value| {
        QueueMessage::new(body.to_string())
            .with_string("ClientId", "lean.0123456789abcdef")
            .with_string("ReplyTo", &ours)
    };

    // A call with nothing before its response: whose it is, for which call.
    fx.inject(asyncmcp_style(&tool_call(1, "echo", json!({"text":"a"}))))
        .await;
    let got = replies(&*ours_inbox, 1).await;
    assert_eq!(got[0].0["id"], 1, "{got:?}");
    assert_eq!(names(&got[0].1), ["ClientId", "RequestId"]);

    // Progress first: every message numbered, nothing more.
    fx.inject(asyncmcp_style(&tool_call(2, "sleep", json!({"ms":200}))))
        .await;
    for (body, message) in replies(&*ours_inbox, 5).await {
        assert_eq!(
            names(&message),
            ["ClientId", "RequestId", "Sequence"],
            "{body}"
        );
        assert_eq!(message.attribute("RequestId"), Some("2"), "{body}");
    }

    // An asyncmcp client's `initialize`: the session id is issued on the
    // response; replies in the session do not repeat it.
    fx.inject(asyncmcp_style(&initialize(&ours))).await;
    let got = replies(&*ours_inbox, 1).await;
    let session = got[0]
        .1
        .attribute("SessionId")
        .expect("the initialize response issues a session")
        .to_owned();
    assert_eq!(names(&got[0].1), ["ClientId", "RequestId", "SessionId"]);
    fx.inject(
        asyncmcp_style(&tool_call(3, "echo", json!({"text":"b"})))
            .with_string("SessionId", &session),
    )
    .await;
    let got = replies(&*ours_inbox, 1).await;
    assert_eq!(got[0].0["id"], 3, "{got:?}");
    assert_eq!(names(&got[0].1), ["ClientId", "RequestId"]);

    // A client that names no `ReplyTo` (Python asyncmcp's): every attribute,
    // the session on every reply.
    let theirs = fx.queue("full-replies").await;
    let theirs_inbox = broker.inbox(&theirs).await;
    fx.inject(QueueMessage::new(initialize(&theirs).to_string()))
        .await;
    let got = replies(&*theirs_inbox, 1).await;
    let session = got[0]
        .1
        .attribute("SessionId")
        .expect("a session")
        .to_owned();
    for name in ["MessageType", "Timestamp", "RequestId", "Sequence"] {
        assert!(got[0].1.attribute(name).is_some(), "{name}: {got:?}");
    }
    fx.inject(
        QueueMessage::new(tool_call(4, "echo", json!({"text":"c"})).to_string())
            .with_string("SessionId", &session),
    )
    .await;
    let got = replies(&*theirs_inbox, 1).await;
    assert_eq!(got[0].0["id"], 4, "{got:?}");
    assert_eq!(got[0].1.attribute("SessionId"), Some(&*session));
    assert_eq!(got[0].1.attribute("MessageType"), Some("jsonrpc"));
    assert!(got[0].1.attribute("Timestamp").is_some(), "{got:?}");

    // A server set to full detail: an asyncmcp client gets every one too.
    fx.stop_server().await;
    fx.start_server(|builder| builder.attribute_detail(asyncmcp::wire::Detail::Full))
        .await;
    fx.inject(asyncmcp_style(&tool_call(5, "echo", json!({"text":"d"}))))
        .await;
    let got = replies(&*ours_inbox, 1).await;
    assert_eq!(got[0].0["id"], 5, "{got:?}");
    assert_eq!(
        names(&got[0].1),
        [
            "ClientId",
            "MessageType",
            "RequestId",
            "Sequence",
            "Timestamp"
        ]
    );
    fx.stop().await;
}

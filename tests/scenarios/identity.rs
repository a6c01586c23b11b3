//! Every caller gets its own answer: the replay cache and the in-flight
//! registry never hand one caller's answer to another that reuses an id,
//! claims another's `ClientId` or `SessionId`, or names another reply
//! address; and a message that fails verification cannot make a signing
//! server say anything about another client's call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use asyncmcp::queue::QueueMessage;
use asyncmcp::wire::signing::{Signing, SigningKeys};
use asyncmcp::{QueueClientConfig, QueueClientTransport};
use rmcp::model::ProtocolVersion;
use rmcp::service::ClientLifecycleMode;
use serde_json::{Value, json};

use super::{Fixture, QueueSpec, TestBroker, call, next_reply, text_of};

/// A stateless (2026-07-28) client on `transport`: it numbers its requests
/// from 0 on every connection, as rmcp does.
async fn stateless(
    transport: QueueClientTransport,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    rmcp::service::serve_client_with_lifecycle(
        (),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("discover lifecycle")
}

/// A `tools/call` of `echo` with `id`, as a raw queue message.
fn echo_request(id: u32, text: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":text}}})
}

fn raw(body: &Value, client_id: &str, reply_to: &str) -> QueueMessage {
    QueueMessage::new(body.to_string())
        .with_string("ClientId", client_id)
        .with_string("ReplyTo", reply_to)
}

/// The text of a raw `echo` result.
fn echoed(reply: &Value) -> &str {
    reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

/// Transports built from one cloned config (the way to run N workers of a
/// pipeline) each get the answers to their own calls, though each numbers
/// its requests from 0 and their configs name one client id; and a
/// pipeline restarted with a fixed client id gets fresh answers, not its
/// previous run's.
pub async fn clients_from_one_config_get_their_own_answers(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let shared_replies = fx.queue("shared-replies").await;
    let config = QueueClientConfig {
        wait: Duration::from_secs(1),
        client_id: "pipeline-worker".into(),
        ..QueueClientConfig::new(&fx.requests)
    };
    // Three workers on one shared reply queue, two on queues of their own.
    let mut workers = Vec::new();
    for index in 0..5 {
        let replies = if index < 3 {
            shared_replies.clone()
        } else {
            fx.queue("own-replies").await
        };
        let transport = QueueClientTransport::new(
            broker.inbox(&replies).await,
            broker.outbox(),
            QueueClientConfig {
                reply_address: Some(replies),
                ..config.clone()
            },
        );
        workers.push(stateless(transport).await);
    }
    for round in 0..2 {
        let calls = workers
            .iter()
            .enumerate()
            .map(|(index, worker)| async move {
                let text = format!("worker {index} round {round}");
                let result = worker
                    .call_tool(call("echo", json!({"text": text})))
                    .await
                    .expect("echo");
                (text, text_of(&result))
            });
        for (asked, answered) in futures::future::join_all(calls).await {
            assert_eq!(answered, asked, "each worker gets its own answer");
        }
    }
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 10, "every call ran");
    for worker in workers {
        worker.cancel().await.expect("close");
    }

    // A restart with the same fixed id, within the replay window.
    for run in ["first run", "second run"] {
        let replies = fx.queue("restart-replies").await;
        let transport = QueueClientTransport::new(
            broker.inbox(&replies).await,
            broker.outbox(),
            QueueClientConfig {
                reply_address: Some(replies),
                ..config.clone()
            },
        );
        let worker = stateless(transport).await;
        let result = worker
            .call_tool(call("echo", json!({"text": run})))
            .await
            .expect("echo");
        assert_eq!(
            text_of(&result),
            run,
            "a restarted client gets fresh answers"
        );
        worker.cancel().await.expect("close");
    }
    fx.stop().await;
}

/// Claiming another caller's `ClientId` or `SessionId` gets nobody's
/// answer but one's own: a copy of a victim's request id naming another
/// reply address runs afresh, and a request sent first under a victim's
/// identity is not what the victim later receives.
pub async fn spoofed_ids_get_their_own_answers(broker: &dyn TestBroker) {
    let mut fx = Fixture::start(broker).await;
    let victim_replies = fx.queue("victim-replies").await;
    let attacker_replies = fx.queue("attacker-replies").await;
    let victim_inbox = broker.inbox(&victim_replies).await;
    let attacker_inbox = broker.inbox(&attacker_replies).await;
    let within = Duration::from_secs(10);

    // The victim's answered call, then the attacker's ping under its
    // ClientId and id, answered at the attacker's own address.
    fx.inject(raw(&echo_request(1, "secret"), "victim", &victim_replies))
        .await;
    let (answer, _) = next_reply(&*victim_inbox, within).await.expect("answer");
    assert_eq!(echoed(&answer), "secret");
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    fx.inject(raw(&ping, "victim", &attacker_replies)).await;
    let (got, _) = next_reply(&*attacker_inbox, within).await.expect("pong");
    assert_eq!(
        got["result"],
        json!({}),
        "the attacker's own ping answered: {got}"
    );
    // The victim's exact request, copied to another address: run again for
    // that address, never replayed there.
    fx.inject(raw(&echo_request(1, "secret"), "victim", &attacker_replies))
        .await;
    let (got, _) = next_reply(&*attacker_inbox, within).await.expect("answer");
    assert_eq!(echoed(&got), "secret");
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        2,
        "run, not replayed"
    );

    // Sent first under the victim's identity: the victim's own request,
    // same id, gets its own answer.
    fx.inject(raw(&echo_request(2, "planted"), "victim", &victim_replies))
        .await;
    let (planted, _) = next_reply(&*victim_inbox, within).await.expect("planted");
    assert_eq!(echoed(&planted), "planted");
    fx.inject(raw(&echo_request(2, "mine"), "victim", &victim_replies))
        .await;
    let (mine, _) = next_reply(&*victim_inbox, within).await.expect("answer");
    assert_eq!(echoed(&mine), "mine", "the victim's own request ran");

    // A legacy victim's session id (every reply shows it), claimed with an
    // allowed reply address of the attacker's.
    let initialize = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-03-26","capabilities":{},
        "clientInfo":{"name":"legacy-victim","version":"1"},
        "response_queue_url": victim_replies}});
    fx.inject(QueueMessage::new(initialize.to_string())).await;
    let (_, initialized) = next_reply(&*victim_inbox, within)
        .await
        .expect("initialized");
    let session = initialized
        .attribute("SessionId")
        .expect("a session id")
        .to_owned();
    let in_session =
        |body: &Value| QueueMessage::new(body.to_string()).with_string("SessionId", &session);
    fx.inject(in_session(&echo_request(3, "session secret")))
        .await;
    let (answer, _) = next_reply(&*victim_inbox, within).await.expect("answer");
    assert_eq!(echoed(&answer), "session secret");
    let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
    fx.inject(in_session(&ping).with_string("ReplyTo", &attacker_replies))
        .await;
    let (got, _) = next_reply(&*attacker_inbox, within).await.expect("pong");
    assert_eq!(
        got["result"],
        json!({}),
        "the attacker's own ping answered: {got}"
    );
    // The same request again in the session (a Python client's resend or a
    // redelivery) is still suppressed: replayed, not run.
    fx.inject(in_session(&echo_request(3, "session secret")))
        .await;
    let (again, _) = next_reply(&*victim_inbox, within).await.expect("replayed");
    assert_eq!(again, answer);
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        5,
        "replayed, not run"
    );
    fx.stop().await;
}

/// With signing required on both sides, a forged message naming a victim's
/// in-flight call and reply queue is refused with an answer that is neither
/// signed nor correlated (`id` null), so the victim's call still ends with
/// its own result.
pub async fn refusals_cannot_fail_another_clients_call(broker: &dyn TestBroker) {
    let keys = SigningKeys::new(vec![7u8; 32], None).expect("keys");
    let server_keys = keys.clone();
    let mut fx = Fixture::start_with(broker, move |b| b.signing(server_keys, true)).await;
    let replies = fx.queue("victim-replies").await;
    let transport = QueueClientTransport::new(
        broker.inbox(&replies).await,
        broker.outbox(),
        QueueClientConfig {
            wait: Duration::from_secs(1),
            reply_address: Some(replies.clone()),
            signing: Some(Signing::new(keys)),
            ..QueueClientConfig::new(&fx.requests)
        },
    );
    let client_id = transport.client_id().to_owned();
    let victim = stateless(transport).await;
    // Stateless rmcp numbers requests from 0: discover was 0, this is 1.
    let call_in_flight = victim.call_tool(call("sleep", json!({"ms": 1500})));
    let forge = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for session_id in [None, Some("v1.forged.session.id")] {
            let mut forged = raw(
                &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
                &client_id,
                &replies,
            );
            if let Some(session_id) = session_id {
                forged = forged.with_string("SessionId", session_id);
            }
            fx.inject(forged).await;
        }
    };
    let (result, ()) = tokio::join!(call_in_flight, forge);
    let result = result.expect("the victim's call ends with its own result");
    assert!(text_of(&result).contains("1500"), "{}", text_of(&result));
    victim.cancel().await.expect("close");

    // What such a refusal looks like on the wire: unsigned, id null.
    let raw_replies = fx.queue("raw-replies").await;
    let inbox = broker.inbox(&raw_replies).await;
    fx.inject(raw(
        &json!({"jsonrpc":"2.0","id":5,"method":"ping"}),
        "anyone",
        &raw_replies,
    ))
    .await;
    let (refusal, message) = next_reply(&*inbox, Duration::from_secs(10))
        .await
        .expect("a refusal");
    assert_eq!(refusal["id"], Value::Null, "{refusal}");
    assert_eq!(refusal["error"]["code"], -32600);
    assert_eq!(refusal["error"]["data"]["requestId"], 5);
    for attribute in ["Signature", "ClientId", "SessionId", "RequestId"] {
        assert_eq!(
            message.attribute(attribute),
            None,
            "{attribute} on a refusal"
        );
    }
    fx.stop().await;
}

/// A duplicate of a request that is still running is held (hidden) until
/// the first run answers, then answered from replay: it is not counted
/// toward the dead-letter limit, however long the run takes beside a short
/// visibility timeout.
pub async fn duplicates_of_running_requests_are_not_dead_lettered(broker: &dyn TestBroker) {
    let spec = QueueSpec {
        visibility_timeout: Some(Duration::from_secs(1)),
        ..QueueSpec::default()
    };
    let mut fx = Fixture::start_on(broker, spec, |b| b).await;
    let dead_letters = fx.queue("dead-letters").await;
    let dead_letter_queue = dead_letters.clone();
    fx.stop_server().await;
    fx.start_server(move |b| b.dead_letter(dead_letter_queue, 1))
        .await;
    let replies = fx.queue("dup-replies").await;
    let inbox = broker.inbox(&replies).await;
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"sleep","arguments":{"ms":3500}}});
    let request = raw(&body, "resending-client", &replies);
    fx.inject(request.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.inject(request).await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let (reply, _) = next_reply(&*inbox, Duration::from_secs(20))
            .await
            .expect("both copies answered");
        if reply.get("method").is_none() {
            answers.push(reply);
        }
    }
    assert_eq!(answers[0], answers[1], "the copy gets the same answer");
    assert!(answers[0]["result"].is_object(), "{}", answers[0]);
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "ran once");
    assert_eq!(
        broker.depth(&dead_letters).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(broker.depth(&fx.requests).await, 0, "both settled");
    fx.stop().await;
}

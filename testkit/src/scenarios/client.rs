//! Scenarios of what a client accepts and in which order it hands it over,
//! most with the server played by hand: the test takes the client's
//! requests off the request queue and sends crafted replies with the
//! broker's own outbox, so it controls exactly what the client is handed.
//! A [`LoggingInbox`] under the client (or the server) shows when each
//! message was received and settled, so that "dropped" and "not yet handed
//! over" are asserted on events, not on how long a test waited.

use super::*;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use asyncmcp::client::QueueClientBuilder;
use asyncmcp::queue::{Delivery, QueueError, QueueInfo, Receipt};
use asyncmcp::wire::signing::{Signing, SigningKeys};
use asyncmcp::wire::{self, Headers};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::time::Instant;

/// What a [`LoggingInbox`] was handed, and how many deliveries were settled.
#[derive(Default)]
pub struct DeliveryLog {
    /// Per delivery: the broker's message id, the body (out of any SNS
    /// envelope) and when it was received.
    received: Mutex<Vec<(String, String, Instant)>>,
    /// Deliveries acknowledged or released.
    settled: AtomicUsize,
}

impl DeliveryLog {
    /// How many times each message whose body contains `needle` was
    /// delivered, one count per message.
    pub fn deliveries_of(&self, needle: &str) -> Vec<usize> {
        let mut counts = HashMap::<String, usize>::new();
        for (id, body, _) in self.received.lock().expect("log").iter() {
            if body.contains(needle) {
                *counts.entry(id.clone()).or_default() += 1;
            }
        }
        counts.into_values().collect()
    }

    /// When the first delivery whose body contains `needle` was received.
    pub fn received_at(&self, needle: &str) -> Option<Instant> {
        let received = self.received.lock().expect("log");
        received
            .iter()
            .find(|(_, body, _)| body.contains(needle))
            .map(|(_, _, at)| *at)
    }

    /// Deliveries acknowledged or released so far.
    pub fn settled(&self) -> usize {
        self.settled.load(Ordering::SeqCst)
    }

    /// Waits until `count` deliveries have been settled.
    pub async fn wait_settled(&self, count: usize) {
        let settled = eventually(Duration::from_secs(20), || self.settled() >= count).await;
        assert!(
            settled,
            "{count} deliveries settled, saw {}",
            self.settled()
        );
    }
}

/// An inbox that logs every delivery it hands out and every settlement.
pub struct LoggingInbox {
    inner: Arc<dyn Inbox>,
    log: Arc<DeliveryLog>,
}

impl LoggingInbox {
    /// Logs what `inner` hands out; the log is returned beside the inbox.
    pub fn new(inner: Arc<dyn Inbox>) -> (Self, Arc<DeliveryLog>) {
        let log = Arc::new(DeliveryLog::default());
        let inbox = Self {
            inner,
            log: log.clone(),
        };
        (inbox, log)
    }
}

#[async_trait]
impl Inbox for LoggingInbox {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deliveries = self.inner.receive(max, wait).await?;
        let now = Instant::now();
        let mut received = self.log.received.lock().expect("log");
        for delivery in &deliveries {
            let message = wire::envelope::unwrap(&delivery.message);
            let body = message.as_ref().unwrap_or(&delivery.message).body.clone();
            received.push((delivery.message_id.clone(), body, now));
        }
        Ok(deliveries)
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let result = self.inner.ack(receipt).await;
        self.log.settled.fetch_add(1, Ordering::SeqCst);
        result
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let result = self.inner.release(receipt).await;
        self.log.settled.fetch_add(1, Ordering::SeqCst);
        result
    }
}

impl<'a> Fixture<'a> {
    /// A fixture with a request queue and no server: the test plays it.
    pub async fn without_server(broker: &'a dyn TestBroker) -> Fixture<'a> {
        Self::without_server_on(broker, QueueSpec::default()).await
    }

    /// A fixture with a request queue made to `spec` and no server.
    pub async fn without_server_on(broker: &'a dyn TestBroker, spec: QueueSpec) -> Fixture<'a> {
        let requests = broker.create_queue_with("requests", spec).await;
        Fixture {
            broker,
            requests: requests.clone(),
            stats: Arc::new(DemoStats::default()),
            server_outbox: broker.outbox(),
            shutdown: CancellationToken::new(),
            server: None,
            session_keys: SessionKeys::random(),
            queues: vec![requests],
        }
    }

    /// Starts a demo server on a request queue made to `spec`, whose request
    /// inbox is logged.
    pub async fn start_logged(
        broker: &'a dyn TestBroker,
        spec: QueueSpec,
    ) -> (Fixture<'a>, Arc<DeliveryLog>) {
        let mut fx = Self::without_server_on(broker, spec).await;
        let (inbox, log) = LoggingInbox::new(broker.inbox(&fx.requests).await);
        let server = QueueServer::builder(inbox, broker.outbox())
            .shutdown_grace(Duration::from_secs(2))
            .wait(Duration::from_secs(1))
            .session_keys(fx.session_keys.clone())
            .build(DemoServer::factory(fx.stats.clone()))
            .spawn(fx.shutdown.clone());
        fx.server = Some(server);
        (fx, log)
    }

    /// A client transport of `server` on a fresh reply queue whose inbox is
    /// logged, with `config` changed as `configure` says.
    pub async fn logged_transport(
        &mut self,
        server: &str,
        configure: impl FnOnce(QueueClientBuilder) -> QueueClientBuilder,
    ) -> (QueueClientTransport, Arc<DeliveryLog>) {
        let replies = self.queue("logged-replies").await;
        let (inbox, log) = LoggingInbox::new(self.broker.inbox(&replies).await);
        let builder = configure(
            QueueClientTransport::builder(server)
                .wait(Duration::from_secs(1))
                .reply_address(replies),
        );
        (builder.build(inbox, self.broker.outbox()), log)
    }
}

/// Sends `message` to `address` through the broker's outbox.
async fn send_to(broker: &dyn TestBroker, address: &str, message: QueueMessage) {
    broker
        .outbox()
        .send(address, message)
        .await
        .expect("send by hand");
}

/// A `tools/call` of `add` with id `id`, as the client transport sends it.
fn add_request(id: u64) -> ClientJsonRpcMessage {
    serde_json::from_value(json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"add","arguments":{"a":2,"b":3}}}))
    .expect("a request")
}

/// The reply a server sends to `transport` for request `id`: a tool result
/// with the text `text`, numbered as the only message of the request.
fn result_reply(transport: &QueueClientTransport, id: u64, text: &str) -> QueueMessage {
    let body = json!({"jsonrpc":"2.0","id":id,
        "result":{"content":[{"type":"text","text":text}],"isError":false}});
    let headers = Headers {
        client_id: Some(transport.client_id().to_owned()),
        request_id: Some(id.to_string()),
        sequence: Some(1),
        ..Headers::default()
    };
    wire::encode(&body, &headers).expect("encode")
}

/// The text of the tool result in `message`, a response.
fn result_text(message: &ServerJsonRpcMessage) -> String {
    let value = serde_json::to_value(message).expect("serializable");
    value["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {value}"))
        .to_owned()
}

/// Asserts that `transport` has nothing to hand over. Called once the
/// reply poller has settled what was sent, which it does only after handing
/// over what it accepts: an accepted message would already be waiting.
async fn assert_nothing_handed_over(transport: &mut QueueClientTransport, what: &str) {
    let handed = tokio::time::timeout(Duration::from_millis(200), transport.receive()).await;
    assert!(handed.is_err(), "{what} was handed over: {handed:?}");
}

/// Sends `message` to the client's reply address and asserts that the
/// client settles it without handing it over (the `settled`-th delivery).
async fn assert_dropped(
    broker: &dyn TestBroker,
    transport: &mut QueueClientTransport,
    log: &DeliveryLog,
    settled: usize,
    message: QueueMessage,
    what: &str,
) {
    send_to(broker, transport.reply_address(), message).await;
    log.wait_settled(settled).await;
    assert_nothing_handed_over(transport, what).await;
}

/// A client that requires signatures drops an unsigned, a tampered and a
/// foreign-signed reply to its call, and then takes the genuine one. Its
/// request is signed.
pub async fn signing_client_drops_bad_replies(broker: &dyn TestBroker) {
    let keys = SigningKeys::new(vec![4u8; 32], None).expect("keys");
    let foreign = SigningKeys::new(vec![5u8; 32], None).expect("keys");
    let mut fx = Fixture::without_server(broker).await;
    let requests = fx.requests.clone();
    let signing = Signing::new(keys.clone());
    let (mut transport, log) = fx
        .logged_transport(&requests, |c| c.signing(signing.keys, signing.required))
        .await;
    transport.send(add_request(7)).await.expect("send");
    let request_inbox = broker.inbox(&requests).await;
    let (body, request) = next_reply(&*request_inbox, Duration::from_secs(15))
        .await
        .expect("the request reached the server's queue");
    assert_eq!(body["id"], 7);
    assert_eq!(keys.verify(&request), Ok(()), "the request is signed");

    let unsigned = result_reply(&transport, 7, "unsigned");
    let mut tampered = result_reply(&transport, 7, "genuine");
    keys.sign(&mut tampered);
    tampered.body = tampered.body.replace("genuine", "tampered");
    let mut foreign_signed = result_reply(&transport, 7, "foreign");
    foreign.sign(&mut foreign_signed);
    let bad = [
        (unsigned, "an unsigned reply"),
        (tampered, "a tampered reply"),
        (foreign_signed, "a reply signed with another key"),
    ];
    for (settled, (message, what)) in (1..).zip(bad) {
        assert_dropped(broker, &mut transport, &log, settled, message, what).await;
    }

    let mut genuine = result_reply(&transport, 7, "genuine");
    keys.sign(&mut genuine);
    send_to(broker, transport.reply_address(), genuine).await;
    let handed = tokio::time::timeout(Duration::from_secs(15), transport.receive())
        .await
        .expect("the genuine reply is handed over")
        .expect("open");
    assert_eq!(result_text(&handed), "genuine");
    transport.close().await.expect("close");
    fx.stop().await;
}

/// With signatures not required (`required: false`), a client and a server
/// accept unsigned messages but still refuse tampered and foreign-signed
/// ones: only a missing signature is excused, never a wrong one.
pub async fn optional_signatures_excuse_only_a_missing_one(broker: &dyn TestBroker) {
    let keys = SigningKeys::new(vec![6u8; 32], None).expect("keys");
    let foreign = SigningKeys::new(vec![7u8; 32], None).expect("keys");
    let server_keys = keys.clone();
    let mut fx = Fixture::start_with(broker, move |b| b.signing(server_keys, false)).await;

    // The client side, with the server played on a queue of the test's own.
    let hand_requests = fx.queue("hand-requests").await;
    let signing = Signing::new(keys.clone()).allow_unsigned();
    let (mut transport, log) = fx
        .logged_transport(&hand_requests, |c| {
            c.signing(signing.keys, signing.required)
        })
        .await;
    transport.send(add_request(8)).await.expect("send");
    let mut tampered = result_reply(&transport, 8, "genuine");
    keys.sign(&mut tampered);
    tampered.body = tampered.body.replace("genuine", "tampered");
    let mut foreign_signed = result_reply(&transport, 8, "foreign");
    foreign.sign(&mut foreign_signed);
    let t = &mut transport;
    assert_dropped(broker, t, &log, 1, tampered, "a tampered reply").await;
    let what = "a reply signed with another key";
    assert_dropped(broker, t, &log, 2, foreign_signed, what).await;
    let unsigned = result_reply(&transport, 8, "unsigned");
    send_to(broker, transport.reply_address(), unsigned).await;
    let handed = tokio::time::timeout(Duration::from_secs(15), transport.receive())
        .await
        .expect("the unsigned reply is handed over")
        .expect("open");
    assert_eq!(result_text(&handed), "unsigned");
    transport.close().await.expect("close");

    // The server side: an unsigned request is served (and answered signed),
    // a tampered or foreign-signed one is refused and never run.
    let replies = fx.queue("optional-replies").await;
    let inbox = broker.inbox(&replies).await;
    let request = |id: u32| {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"add","arguments":{"a":1,"b":1}}});
        let headers = Headers {
            reply_to: Some(replies.clone()),
            client_id: Some("optional-signing".into()),
            ..Headers::default()
        };
        wire::encode(&body, &headers).expect("encode")
    };
    fx.inject(request(81)).await;
    let (reply, message) = next_reply(&*inbox, Duration::from_secs(15))
        .await
        .expect("the unsigned request is answered");
    assert_eq!(reply["id"], 81);
    assert_eq!(reply["result"]["content"][0]["text"], "2", "{reply}");
    assert_eq!(keys.verify(&message), Ok(()), "the answer is signed");
    let mut tampered = request(82);
    keys.sign(&mut tampered);
    tampered.body = tampered.body.replace("\"a\":1", "\"a\":100");
    let mut foreign_signed = request(83);
    foreign.sign(&mut foreign_signed);
    for (id, message) in [(82, tampered), (83, foreign_signed)] {
        fx.inject(message).await;
        let (reply, _) = next_reply(&*inbox, Duration::from_secs(15))
            .await
            .expect("a refusal");
        // Refused messages are answered uncorrelated: id null, the claimed
        // id only in the error's data.
        assert_eq!(reply["id"], serde_json::Value::Null, "{reply}");
        assert_eq!(reply["error"]["data"]["requestId"], id, "{reply}");
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
        let text = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains("signature"), "{text}");
    }
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        1,
        "only the unsigned request ran"
    );
    fx.stop().await;
}

/// Key rotation as docs/wire.md describes it, step by step, with a real
/// server and clients: from key A to key B every peer goes through
/// `(A, None)`, `(A, Some(B))`, `(B, Some(A))`, `(B, None)`, one peer at a
/// time, so a server meets clients one step behind or ahead of it, and
/// every call succeeds. Rotating the server straight to `(B, Some(A))`
/// while a client still holds A alone would not work: that client drops
/// every reply, as the end of the scenario shows.
pub async fn signing_keys_rotate_step_by_step(broker: &dyn TestBroker) {
    let (a, b) = (vec![8u8; 32], vec![9u8; 32]);
    let step = |n: usize| {
        let (current, previous) = match n {
            0 => (&a, None),
            1 => (&a, Some(&b)),
            2 => (&b, Some(&a)),
            _ => (&b, None),
        };
        SigningKeys::new(current.clone(), previous.cloned()).expect("keys")
    };
    let mut fx = Fixture::without_server(broker).await;
    let mut calls = 0;
    for server_step in 0..4 {
        let keys = step(server_step);
        fx.stop_server().await;
        fx.start_server(move |s| s.signing(keys, true)).await;
        for client_step in server_step.saturating_sub(1)..=(server_step + 1).min(3) {
            let signing = Signing::new(step(client_step));
            let requests = fx.requests.clone();
            let (transport, _) = fx
                .logged_transport(&requests, |c| c.signing(signing.keys, signing.required))
                .await;
            let steps = format!("server at step {server_step}, client at step {client_step}");
            let client = ().serve(transport).await.unwrap_or_else(|e| {
                panic!("{steps}: connects: {e}");
            });
            let echoed = client
                .call_tool(call("echo", json!({"text": steps})))
                .await
                .unwrap_or_else(|e| panic!("{steps}: call: {e}"));
            assert_eq!(text_of(&echoed), steps);
            client.cancel().await.expect("close");
            calls += 1;
        }
    }
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), calls);

    // Receivers first, one direction at a time, does not work when every
    // peer receives: a server at (B, Some(A)) accepts the request of a
    // client holding A alone, and that client drops the answer.
    fx.stop_server().await;
    let rotated = step(2);
    fx.start_server(move |s| s.signing(rotated, true)).await;
    let signing = Signing::new(step(0));
    let requests = fx.requests.clone();
    let (mut transport, log) = fx
        .logged_transport(&requests, |c| c.signing(signing.keys, signing.required))
        .await;
    transport.send(add_request(9)).await.expect("send");
    log.wait_settled(1).await;
    assert_nothing_handed_over(&mut transport, "a reply signed with the new key").await;
    assert_eq!(
        fx.stats.calls.load(Ordering::Relaxed),
        calls + 1,
        "the server ran the call"
    );
    transport.close().await.expect("close");
    fx.stop().await;
}

/// A message numbered for the reorder buffer: request 7's `sequence`-th.
fn numbered(transport: &QueueClientTransport, body: &Value, sequence: u64) -> QueueMessage {
    let headers = Headers {
        client_id: Some(transport.client_id().to_owned()),
        request_id: Some("7".into()),
        sequence: Some(sequence),
        ..Headers::default()
    };
    wire::encode(body, &headers).expect("encode")
}

fn progress(n: u64) -> Value {
    json!({"jsonrpc":"2.0","method":"notifications/progress",
           "params":{"progressToken":"t","progress":n}})
}

fn response_7() -> Value {
    json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}})
}

/// A response whose notifications never come (they were lost) is held for
/// `order_wait` after it arrived, through the transport's own timer, and
/// then handed over.
pub async fn order_wait_releases_a_response_whose_notifications_were_lost(broker: &dyn TestBroker) {
    let order_wait = Duration::from_millis(300);
    let mut fx = Fixture::without_server(broker).await;
    let requests = fx.requests.clone();
    let (mut transport, log) = fx
        .logged_transport(&requests, |c| c.order_wait(order_wait))
        .await;
    // The third message of request 7; notifications 1 and 2 never come.
    let response = numbered(&transport, &response_7(), 3);
    send_to(broker, transport.reply_address(), response).await;
    let handed = tokio::time::timeout(Duration::from_secs(15), transport.receive())
        .await
        .expect("the response is handed over once order_wait ends")
        .expect("open");
    let handed_at = Instant::now();
    assert!(matches!(handed, ServerJsonRpcMessage::Response(_)));
    let received_at = log.received_at("\"id\":7").expect("received");
    let held = handed_at - received_at;
    assert!(
        held >= order_wait,
        "held {held:?}, less than order_wait {order_wait:?}"
    );
    transport.close().await.expect("close");
    fx.stop().await;
}

/// A notification delivered twice counts once: a response numbered 3 still
/// waits for notification 2 after notification 1 came twice, and follows
/// notification 2 when it comes.
pub async fn a_duplicated_notification_counts_once(broker: &dyn TestBroker) {
    let mut fx = Fixture::without_server(broker).await;
    let requests = fx.requests.clone();
    // Long enough that only notification 2 can release the response.
    let order_wait = Duration::from_secs(120);
    let (mut transport, log) = fx
        .logged_transport(&requests, |c| c.order_wait(order_wait))
        .await;
    let reply_address = transport.reply_address().to_owned();
    for message in [
        numbered(&transport, &progress(1), 1),
        numbered(&transport, &progress(1), 1),
        numbered(&transport, &response_7(), 3),
    ] {
        send_to(broker, &reply_address, message).await;
    }
    log.wait_settled(3).await;
    // Everything the poller accepted is waiting: take it all.
    let mut kinds = Vec::new();
    while let Ok(message) =
        tokio::time::timeout(Duration::from_millis(200), transport.receive()).await
    {
        kinds.push(match message.expect("open") {
            ServerJsonRpcMessage::Notification(_) => "notification",
            _ => "response",
        });
    }
    assert!(
        !kinds.contains(&"response"),
        "the response waits for notification 2: {kinds:?}"
    );
    assert!(!kinds.is_empty(), "notification 1 is handed over");
    send_to(
        broker,
        &reply_address,
        numbered(&transport, &progress(2), 2),
    )
    .await;
    let mut rest = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(15), transport.receive())
            .await
            .expect("notification 2 and the response")
            .expect("open");
        rest.push(serde_json::to_value(&message).expect("serializable"));
    }
    assert_eq!(rest[0]["params"]["progress"], 2.0, "{rest:?}");
    assert_eq!(rest[1]["id"], 7, "{rest:?}");
    transport.close().await.expect("close");
    fx.stop().await;
}

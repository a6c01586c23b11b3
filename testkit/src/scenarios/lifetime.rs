//! Scenarios of a request's whole life on the server: its visibility is
//! kept up while a reply send stalls, never past the broker's visibility
//! ceiling (the call ends with a clear error before it), and a
//! server-to-client request made by a handler fails at once instead of
//! holding the call.

use super::*;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use asyncmcp::queue::{Delivery, QueueError, QueueInfo, Receipt};
use tokio::time::Instant;

/// An outbox that holds the first send whose body contains `needle` for
/// `stall` before forwarding it: a broker that accepts the connection and
/// does not answer for a while. Every later such send is held too when
/// made [`again`](StallingOutbox::again).
pub struct StallingOutbox {
    inner: Arc<dyn Outbox>,
    needle: String,
    stall: Duration,
    stalled: AtomicUsize,
    again: bool,
}

impl StallingOutbox {
    /// Holds the first send whose body contains `needle` for `stall`.
    pub fn new(inner: Arc<dyn Outbox>, needle: &str, stall: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            needle: needle.to_owned(),
            stall,
            stalled: AtomicUsize::new(0),
            again: false,
        })
    }

    /// Holds every send whose body contains `needle`, not only the first.
    pub fn again(inner: Arc<dyn Outbox>, needle: &str, stall: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            needle: needle.to_owned(),
            stall,
            stalled: AtomicUsize::new(0),
            again: true,
        })
    }

    /// Sends held so far.
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Outbox for StallingOutbox {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }
    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        if message.body.contains(&self.needle)
            && (self.stalled.fetch_add(1, Ordering::SeqCst) == 0 || self.again)
        {
            tokio::time::sleep(self.stall).await;
        }
        self.inner.send(address, message).await
    }
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

/// One visibility extension the server asked for.
#[derive(Debug, Clone, Copy)]
pub struct Extension {
    /// When the delivery it extends was received (as its receive returned).
    pub received: Instant,
    /// When it was asked for.
    pub at: Instant,
    /// For how long from then.
    pub visibility: Duration,
}

/// An inbox that records every delivery (message id, body, when) and every
/// extension asked for.
pub struct RecordingInbox {
    inner: Arc<dyn Inbox>,
    /// Per receipt: when its receive returned.
    received_at: Mutex<HashMap<String, Instant>>,
    /// Per delivery: the broker's message id and the body.
    deliveries: Mutex<Vec<(String, String)>>,
    extensions: Mutex<Vec<Extension>>,
}

impl RecordingInbox {
    /// Records what `inner` hands out and what it is asked to extend.
    pub fn new(inner: Arc<dyn Inbox>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            received_at: Mutex::default(),
            deliveries: Mutex::default(),
            extensions: Mutex::default(),
        })
    }

    /// How many times each message whose body contains `needle` was
    /// delivered, one count per message.
    pub fn deliveries_of(&self, needle: &str) -> Vec<usize> {
        let mut counts = HashMap::<String, usize>::new();
        for (id, body) in self.deliveries.lock().expect("log").iter() {
            if body.contains(needle) {
                *counts.entry(id.clone()).or_default() += 1;
            }
        }
        counts.into_values().collect()
    }

    /// Every extension asked for so far, in order.
    pub fn extensions(&self) -> Vec<Extension> {
        self.extensions.lock().expect("log").clone()
    }
}

#[async_trait]
impl Inbox for RecordingInbox {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deliveries = self.inner.receive(max, wait).await?;
        let now = Instant::now();
        for delivery in &deliveries {
            let message = asyncmcp::wire::envelope::unwrap(&delivery.message);
            let body = message.as_ref().unwrap_or(&delivery.message).body.clone();
            self.deliveries
                .lock()
                .expect("log")
                .push((delivery.message_id.clone(), body));
            self.received_at
                .lock()
                .expect("log")
                .insert(delivery.receipt.0.clone(), now);
        }
        Ok(deliveries)
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.ack(receipt).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        let at = Instant::now();
        let received = self
            .received_at
            .lock()
            .expect("log")
            .get(&receipt.0)
            .copied();
        if let Some(received) = received {
            self.extensions.lock().expect("log").push(Extension {
                received,
                at,
                visibility,
            });
        }
        self.inner.extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.release(receipt).await
    }
}

impl<'a> Fixture<'a> {
    /// Starts a demo server on a request queue made to `spec`, whose inbox
    /// is `wrap` of the queue's and whose outbox is `outbox`.
    async fn start_wrapped(
        broker: &'a dyn TestBroker,
        spec: QueueSpec,
        outbox: Arc<dyn Outbox>,
        wrap: impl FnOnce(Arc<dyn Inbox>) -> Arc<dyn Inbox>,
        customise: impl FnOnce(QueueServerBuilder) -> QueueServerBuilder,
    ) -> Fixture<'a> {
        let mut fx = Self::without_server_on(broker, spec).await;
        fx.server_outbox = outbox.clone();
        let inbox = wrap(broker.inbox(&fx.requests).await);
        let builder = QueueServer::builder(inbox, outbox)
            .shutdown_grace(Duration::from_secs(2))
            .wait(Duration::from_secs(1))
            .session_keys(fx.session_keys.clone());
        let server = customise(builder)
            .build(DemoServer::factory(fx.stats.clone()))
            .spawn(fx.shutdown.clone());
        fx.server = Some(server);
        fx
    }
}

/// The final response of a call stalls (the broker accepts the send and
/// does not answer) for more than twice the visibility timeout, then goes
/// out: the heartbeat keeps the request hidden all the while, so it is
/// delivered once, the tool runs once and the caller gets its answer.
pub async fn heartbeat_runs_through_a_stalled_reply(broker: &dyn TestBroker) {
    let visibility = Duration::from_secs(2);
    let stall = Duration::from_secs(5);
    let spec = QueueSpec {
        visibility_timeout: Some(visibility),
        ..QueueSpec::default()
    };
    // Only a tool result carries `content`.
    let outbox = StallingOutbox::new(broker.outbox(), "\"content\"", stall);
    let recorded = std::sync::OnceLock::new();
    let mut fx = Fixture::start_wrapped(
        broker,
        spec,
        outbox.clone(),
        |inner| {
            let wrapped = RecordingInbox::new(inner);
            let _ = recorded.set(wrapped.clone());
            wrapped
        },
        |b| b,
    )
    .await;
    let deliveries = recorded.get().expect("wrapped").clone();
    let client = fx.client().await;
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        client.call_tool(call("add", json!({"a": 2, "b": 3}))),
    )
    .await
    .expect("answered within 30 s")
    .expect("add");
    assert_eq!(text_of(&result), "5");
    assert_eq!(outbox.stalled(), 1, "the final response was held");
    // Past another visibility period: a request that had lapsed would be
    // delivered again by now.
    tokio::time::sleep(visibility + Duration::from_secs(1)).await;
    assert_eq!(
        deliveries.deliveries_of("\"add\""),
        [1],
        "the request was delivered exactly once"
    );
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "add ran once");
    assert_eq!(broker.depth(&fx.requests).await, 0, "request deleted");
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// With a visibility ceiling of 6 s (SQS: 12 h from receipt), a call that
/// would run longer ends before it with a clear timeout error: the handler
/// is cancelled, the request is answered and removed, it is delivered
/// once, and no extension ever reaches past the ceiling.
pub async fn visibility_ceiling_ends_the_call_in_time(broker: &dyn TestBroker) {
    let visibility = Duration::from_secs(2);
    let ceiling = Duration::from_secs(6);
    let spec = QueueSpec {
        visibility_timeout: Some(visibility),
        ..QueueSpec::default()
    };
    let recorded = std::sync::OnceLock::new();
    let mut fx = Fixture::start_wrapped(
        broker,
        spec,
        broker.outbox(),
        |inner| {
            let wrapped = RecordingInbox::new(inner);
            let _ = recorded.set(wrapped.clone());
            wrapped
        },
        |b| b.visibility_ceiling(ceiling),
    )
    .await;
    let inbox = recorded.get().expect("wrapped").clone();
    let client = fx.client().await;
    let started = Instant::now();
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        client.call_tool(call("sleep", json!({"ms": 30_000}))),
    )
    .await
    .expect("the call ended within 20 s")
    .expect_err("a timeout error");
    let took = started.elapsed();
    assert!(took < ceiling, "ended before the ceiling: {took:?}");
    match error {
        ServiceError::McpError(error) => {
            assert_eq!(error.code.0, -32001, "{error:?}");
            assert!(
                error.message.contains("6 s") && error.message.contains("ceiling"),
                "the error names the ceiling: {}",
                error.message
            );
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    let stats = fx.stats.clone();
    assert!(
        eventually(Duration::from_secs(5), || stats
            .sleeps_cancelled
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "the handler was cancelled"
    );
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request removed"
    );
    // Past another visibility period: a request left behind would be
    // delivered again by now.
    tokio::time::sleep(visibility + Duration::from_secs(1)).await;
    assert_eq!(inbox.deliveries_of("\"sleep\""), [1], "delivered once");
    let extensions = inbox.extensions();
    assert!(
        extensions.len() >= 2,
        "extended while it ran: {extensions:?}"
    );
    for extension in &extensions {
        let hidden_until = extension.at + extension.visibility;
        assert!(
            hidden_until <= extension.received + ceiling,
            "an extension reaches {:?} past receipt, beyond the {ceiling:?} ceiling",
            hidden_until - extension.received
        );
    }
    assert_eq!(stats.sleeps_completed.load(Ordering::Relaxed), 0);
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// A tool that asks the client for its roots (a server-to-client request)
/// over a legacy session gets an error at once, which it can handle: the
/// call finishes within seconds, and nothing but its final response is
/// sent to the reply queue.
pub async fn server_to_client_requests_fail_at_once(broker: &dyn TestBroker) {
    let outbox = FaultyOutbox::new(broker.outbox());
    let mut fx =
        Fixture::start_with_outbox(broker, QueueSpec::default(), outbox.clone(), |b| b).await;
    let client = fx.client().await;
    let before = outbox.attempts().len();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        client.call_tool(call("roots", json!({}))),
    )
    .await
    .expect("the call finished within 10 s")
    .expect("a tool result");
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let text = text_of(&result);
    assert!(
        text.contains("not carried over queues") && text.contains("roots/list"),
        "a clear error: {text}"
    );
    let sent: Vec<_> = outbox.attempts().split_off(before);
    assert_eq!(
        sent.len(),
        1,
        "only the final response was sent: {:?}",
        sent.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    let body = sent[0].body.clone().unwrap_or_default();
    assert!(body.get("method").is_none(), "{body}");
    assert!(body["result"]["content"].is_array(), "{body}");
    assert_eq!(fx.stats.calls.load(Ordering::Relaxed), 1, "roots ran once");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request removed"
    );
    client.cancel().await.expect("close");
    fx.stop().await;
}

/// A final response the broker holds up for a minute does not hold up the
/// run: the server's deadline still answers the call with its timeout
/// error, and shutdown still releases a call whose reply is held, within
/// its grace period.
pub async fn a_stalled_reply_keeps_deadline_and_shutdown(broker: &dyn TestBroker) {
    let stall = Duration::from_secs(60);
    // The deadline: the tool result is held, the timeout error is not.
    let outbox = StallingOutbox::again(broker.outbox(), "\"content\"", stall);
    let mut fx = Fixture::start_with_outbox(broker, QueueSpec::default(), outbox.clone(), |b| {
        b.request_timeout(Duration::from_secs(2))
    })
    .await;
    let client = fx.client().await;
    let error = tokio::time::timeout(
        Duration::from_secs(15),
        client.call_tool(call("add", json!({"a": 2, "b": 3}))),
    )
    .await
    .expect("the deadline ended the call within 15 s")
    .expect_err("a timeout error");
    match error {
        ServiceError::McpError(error) => assert_eq!(error.code.0, -32001, "{error:?}"),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    assert_eq!(outbox.stalled(), 1, "the result was held");
    assert!(
        final_reply::drained(broker, &fx.requests).await,
        "request answered and removed"
    );

    // Shutdown: the run is released within the grace period (2 s).
    fx.stop_server().await;
    fx.start_server(|b| b).await;
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.call_tool(call("add", json!({"a": 1, "b": 1}))).await })
    };
    assert!(
        eventually(Duration::from_secs(15), || outbox.stalled() == 2).await,
        "the second result was held"
    );
    tokio::time::timeout(Duration::from_secs(10), fx.stop_server())
        .await
        .expect("shutdown ended within 10 s, not held up by the send");
    assert_eq!(
        broker.depth(&fx.requests).await,
        1,
        "the request was released, not removed"
    );
    pending.abort();
    let _ = client.cancel().await;
    fx.stop().await;
}

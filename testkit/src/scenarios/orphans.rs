//! Scenarios of a reply queue shared by several clients when one of them is
//! gone: its replies (orphans) do not circulate until retention ends, and a
//! client dropped mid-poll gives back what that poll took.

use super::*;

use asyncmcp::queue::{Delivery, QueueError, QueueInfo, Receipt};
use asyncmcp::wire::{self, Headers};
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::Transport;

/// A reply for the client connection `client_id`: a tool result for call
/// `id` with the text `text`.
fn reply_for(client_id: &str, id: u64, text: &str) -> QueueMessage {
    let body = json!({"jsonrpc":"2.0","id":id,
        "result":{"content":[{"type":"text","text":text}],"isError":false}});
    let headers = Headers {
        client_id: Some(client_id.to_owned()),
        request_id: Some(id.to_string()),
        sequence: Some(1),
        ..Headers::default()
    };
    wire::encode(&body, &headers).expect("encode")
}

/// Waits until the queue at `address` holds no message (visible or in
/// flight), for at most `within`.
async fn wait_empty(broker: &dyn TestBroker, address: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if broker.depth(address).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.depth(address).await == 0
}

/// A reply whose client is gone, on a shared reply queue, is released for
/// its owner until it has been received `orphan_after` times, and then
/// deleted: it does not circulate until the queue's retention ends.
pub async fn orphan_replies_are_removed_after_the_threshold(broker: &dyn TestBroker) {
    let mut fx = Fixture::without_server(broker).await;
    let shared = fx.queue("orphan-replies").await;
    let (inbox, log) = LoggingInbox::new(broker.inbox(&shared).await);
    let requests = fx.requests.clone();
    let mut transport = QueueClientTransport::builder(&requests)
        .wait(Duration::from_secs(1))
        .reply_address(shared.clone())
        .orphan_after(3)
        .build(inbox, broker.outbox());
    // The reply of a connection that no longer exists.
    let orphan = reply_for("departed.0123456789abcdef", 5, "orphaned");
    broker.outbox().send(&shared, orphan).await.expect("send");
    // Through a topic the message reaches the queue a moment later: wait
    // until the client has seen it before waiting for the queue to empty.
    let seen = super::eventually(Duration::from_secs(30), || {
        !log.deliveries_of("orphaned").is_empty()
    })
    .await;
    assert!(seen, "the orphan reached the shared queue");
    assert!(
        wait_empty(broker, &shared, Duration::from_secs(30)).await,
        "the orphan is still on the queue after {:?} deliveries",
        log.deliveries_of("orphaned")
    );
    assert_eq!(
        log.deliveries_of("orphaned"),
        [3],
        "received exactly orphan_after times"
    );
    // Nothing of it reached the client that is still there.
    let handed = tokio::time::timeout(Duration::from_millis(200), transport.receive()).await;
    assert!(handed.is_err(), "the orphan was handed over: {handed:?}");
    transport.close().await.expect("close");
    fx.stop().await;
}

/// An inbox whose receives wait for `open` before they start.
struct GatedInbox {
    inner: Arc<dyn Inbox>,
    open: CancellationToken,
}

#[async_trait]
impl Inbox for GatedInbox {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.open.cancelled().await;
        self.inner.receive(max, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.ack(receipt).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.release(receipt).await
    }
}

/// An inbox whose receives, once the broker has handed them messages, say
/// so (`holding`) and return them only when `answer` is cancelled: a receive
/// whose answer is still on its way when the client goes, as an SQS call
/// that has taken messages is.
struct SlowAnswerInbox {
    inner: Arc<dyn Inbox>,
    holding: CancellationToken,
    answer: CancellationToken,
}

#[async_trait]
impl Inbox for SlowAnswerInbox {
    fn info(&self) -> &QueueInfo {
        self.inner.info()
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deliveries = self.inner.receive(max, wait).await?;
        if !deliveries.is_empty() {
            self.holding.cancel();
            self.answer.cancelled().await;
        }
        Ok(deliveries)
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.ack(receipt).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(receipt, visibility).await
    }
    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.release(receipt).await
    }
}

/// Dropping a client (without `close`) whose poll has taken another
/// client's reply from their shared reply queue gives the reply back at
/// once: the other client has it well within the queue's 30 s visibility
/// timeout. Dropping does not wait for the poll (the answer of the poll is
/// let through only after the drop returned).
pub async fn dropping_a_client_gives_back_what_its_poll_took(broker: &dyn TestBroker) {
    let visibility = Duration::from_secs(30);
    let mut fx = Fixture::without_server(broker).await;
    let spec = QueueSpec {
        visibility_timeout: Some(visibility),
        ..QueueSpec::default()
    };
    let shared = broker.create_queue_with("drop-replies", spec).await;
    fx.queues.push(shared.clone());
    let requests = fx.requests.clone();
    let config = || {
        QueueClientTransport::builder(&requests)
            .wait(Duration::from_secs(1))
            .reply_address(shared.clone())
    };
    // The client that stays: it polls only once `stay_open` is cancelled,
    // so that the reply is taken by the other one's poll first.
    let stay_open = CancellationToken::new();
    let stays = GatedInbox {
        inner: broker.inbox(&shared).await,
        open: stay_open.clone(),
    };
    let mut staying = config().build(stays, broker.outbox());
    let (holding, answer) = (CancellationToken::new(), CancellationToken::new());
    let goes = SlowAnswerInbox {
        inner: broker.inbox(&shared).await,
        holding: holding.clone(),
        answer: answer.clone(),
    };
    let going = config().build(goes, broker.outbox());

    let reply = reply_for(staying.client_id(), 11, "for the staying client");
    broker.outbox().send(&shared, reply).await.expect("send");
    tokio::time::timeout(Duration::from_secs(20), holding.cancelled())
        .await
        .expect("the going client's poll took the reply");
    let dropped_at = tokio::time::Instant::now();
    drop(going);
    answer.cancel();
    stay_open.cancel();
    let handed = tokio::time::timeout(visibility / 3, staying.receive())
        .await
        .expect("the reply is given back, not hidden for the visibility timeout")
        .expect("open");
    let value = serde_json::to_value(&handed).expect("serializable");
    assert!(matches!(handed, ServerJsonRpcMessage::Response(_)));
    assert_eq!(
        value["result"]["content"][0]["text"], "for the staying client",
        "{value}"
    );
    let waited = dropped_at.elapsed();
    assert!(
        waited < visibility / 3,
        "the reply came {waited:?} after the drop"
    );
    staying.close().await.expect("close");
    fx.stop().await;
}

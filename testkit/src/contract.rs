//! The Inbox/Outbox contract: what the server and the client rely on of every
//! broker's [`Inbox`] and [`Outbox`](asyncmcp::queue::Outbox), checked the
//! same way on each.
//!
//! * a message arrives with its body and attributes, delivered once
//!   ([`receive_count`](asyncmcp::queue::Delivery::receive_count) 1) under a
//!   message id;
//! * a receive on an empty queue waits its wait out and returns nothing, and
//!   a send during the wait ends it;
//! * [`ack`](Inbox::ack) removes a message for good; a receipt the broker
//!   never gave out settles nothing;
//! * [`release`](Inbox::release) makes a message visible again at once, and
//!   every delivery counts;
//! * [`extend`](Inbox::extend) keeps a message hidden past its visibility
//!   timeout, while one not extended comes back;
//! * a message larger than the destination accepts (body and attributes, as
//!   [`wire_size`](QueueMessage::wire_size) counts) is refused as
//!   [`TooLarge`](QueueError::TooLarge) without being sent; one at the limit
//!   is delivered;
//! * an address the outbox does not serve is an
//!   [`UnsupportedDestination`](QueueError::UnsupportedDestination), and one
//!   that does not exist is refused for good.
//!
//! Each check is an `async fn(&dyn TestBroker)`;
//! [`contract_tests!`](crate::contract_tests) makes one test of each.
//! Deliveries are read as the server reads them: out of the SNS envelope
//! when the broker wraps them in one.

use std::time::Duration;

use asyncmcp::queue::{AttributeValue, Delivery, Inbox, QueueError, QueueMessage, Receipt};
use tokio::time::Instant;

use crate::TestBroker;
use crate::broker::QueueSpec;

/// An address no broker serves.
const FOREIGN: &str = "unsupported://asyncmcp-contract/queue";

/// A queue with this visibility timeout.
fn visibility(seconds: u64) -> QueueSpec {
    QueueSpec {
        visibility_timeout: Some(Duration::from_secs(seconds)),
        ..QueueSpec::default()
    }
}

/// `delivery` with its message out of the SNS envelope, if it came in one.
fn opened(mut delivery: Delivery) -> Delivery {
    if let Some(message) = asyncmcp::wire::envelope::unwrap(&delivery.message) {
        delivery.message = message;
    }
    delivery
}

/// Receives until `count` deliveries have arrived or `within` has passed.
async fn receive(inbox: &dyn Inbox, count: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        let delivered = inbox.receive(10, wait).await.expect("receive");
        got.extend(delivered.into_iter().map(opened));
    }
    got
}

/// The one delivery that arrives within 30 s.
async fn receive_one(inbox: &dyn Inbox) -> Delivery {
    let mut got = receive(inbox, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "expected one delivery: {got:?}");
    got.remove(0)
}

/// Waits until the queue at `address` holds nothing, visible or in flight.
async fn drained(broker: &dyn TestBroker, address: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if broker.depth(address).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.depth(address).await == 0
}

/// A message arrives as it was sent: body (any UTF-8), `String` and
/// `Number` attributes; first delivered with a receive count of 1 and a
/// message id. The inbox reports the queue's visibility timeout.
pub async fn a_message_arrives_with_its_body_and_attributes(broker: &dyn TestBroker) {
    let address = broker
        .create_queue_with("contract-round-trip", visibility(45))
        .await;
    let mut message = QueueMessage::new(r#"{"jsonrpc":"2.0","id":1,"params":{"text":"é ✓"}}"#)
        .with_string("mcp-session", "s-1");
    message
        .attributes
        .insert("seq".to_owned(), AttributeValue::Number("42".to_owned()));
    broker
        .outbox()
        .send(&address, message.clone())
        .await
        .expect("send");

    let inbox = broker.inbox(&address).await;
    assert_eq!(inbox.info().visibility_timeout, Duration::from_secs(45));
    assert!(!inbox.info().fifo);
    assert!(inbox.info().max_message_size >= 1024);
    let delivery = receive_one(&*inbox).await;
    assert_eq!(delivery.message, message);
    assert_eq!(delivery.receive_count, 1);
    assert!(!delivery.message_id.is_empty());
    inbox.ack(&delivery.receipt).await.expect("ack");
    broker.delete_queue(&address).await;
}

/// A receive on an empty queue waits for its wait and returns nothing; a
/// message sent while a receive waits ends the wait.
pub async fn an_empty_receive_waits_and_a_send_wakes_it(broker: &dyn TestBroker) {
    let address = broker.create_queue("contract-wait").await;
    let inbox = broker.inbox(&address).await;

    let wait = Duration::from_secs(2);
    let started = Instant::now();
    let got = inbox.receive(10, wait).await.expect("receive");
    let waited = started.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(waited >= wait / 2, "returned after {waited:?} of {wait:?}");
    assert!(waited < wait + Duration::from_secs(5), "waited {waited:?}");

    let outbox = broker.outbox();
    let target = address.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        outbox.send(&target, QueueMessage::new("late")).await
    });
    let started = Instant::now();
    let got = inbox
        .receive(1, Duration::from_secs(20))
        .await
        .expect("receive");
    let waited = started.elapsed();
    sender.await.expect("sender").expect("send");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(opened(got[0].clone()).message.body, "late");
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
    inbox.ack(&got[0].receipt).await.expect("ack");
    broker.delete_queue(&address).await;
}

/// An acknowledged message is gone: not delivered again once its
/// visibility timeout has passed, and not counted in the queue.
pub async fn ack_removes_the_message(broker: &dyn TestBroker) {
    let address = broker
        .create_queue_with("contract-ack", visibility(1))
        .await;
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .expect("send");
    let inbox = broker.inbox(&address).await;
    let delivery = receive_one(&*inbox).await;
    inbox.ack(&delivery.receipt).await.expect("ack");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = inbox
        .receive(10, Duration::from_secs(1))
        .await
        .expect("receive");
    assert!(
        again.is_empty(),
        "an acknowledged message came back: {again:?}"
    );
    assert!(drained(broker, &address).await, "the queue still counts it");
    broker.delete_queue(&address).await;
}

/// A receipt the broker never gave out settles nothing: releasing or
/// acknowledging it is [`QueueError::InvalidReceipt`].
pub async fn unknown_receipts_are_invalid(broker: &dyn TestBroker) {
    let address = broker.create_queue("contract-receipt").await;
    let inbox = broker.inbox(&address).await;
    let bogus = Receipt("not-a-receipt".to_owned());
    let released = inbox.release(&bogus).await;
    assert!(
        matches!(released, Err(QueueError::InvalidReceipt)),
        "{released:?}"
    );
    let acked = inbox.ack(&bogus).await;
    assert!(
        matches!(acked, Err(QueueError::InvalidReceipt)),
        "{acked:?}"
    );
    broker.delete_queue(&address).await;
}

/// A released message is visible again at once (long before its 60 s
/// visibility timeout), under the same message id, and each delivery is
/// counted.
pub async fn release_makes_the_message_visible_at_once(broker: &dyn TestBroker) {
    let address = broker
        .create_queue_with("contract-release", visibility(60))
        .await;
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .expect("send");
    let inbox = broker.inbox(&address).await;
    let first = receive_one(&*inbox).await;
    assert_eq!(first.receive_count, 1);
    let mut last = first.clone();
    for count in 2..=3 {
        inbox.release(&last.receipt).await.expect("release");
        last = receive_one(&*inbox).await;
        assert_eq!(last.message_id, first.message_id);
        assert_eq!(last.receive_count, count);
        assert_eq!(last.message.body, "x");
    }
    inbox.ack(&last.receipt).await.expect("ack");
    broker.delete_queue(&address).await;
}

/// An extended message stays hidden past its visibility timeout, while one
/// received with it and not extended comes back (counted twice).
pub async fn extend_keeps_a_message_hidden_past_its_visibility(broker: &dyn TestBroker) {
    let address = broker
        .create_queue_with("contract-extend", visibility(2))
        .await;
    let outbox = broker.outbox();
    outbox
        .send(&address, QueueMessage::new("kept"))
        .await
        .expect("send");
    outbox
        .send(&address, QueueMessage::new("control"))
        .await
        .expect("send");
    let inbox = broker.inbox(&address).await;
    let first = receive(&*inbox, 2, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let kept = first
        .iter()
        .find(|d| d.message.body == "kept")
        .expect("kept arrived");
    inbox
        .extend(&kept.receipt, Duration::from_secs(60))
        .await
        .expect("extend");
    // Twice the visibility timeout: long enough for "kept" to be back too,
    // had the extension not held it.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut again: Vec<Delivery> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !again.iter().any(|d| d.message.body == "control") && Instant::now() < deadline {
        let delivered = inbox
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive");
        again.extend(delivered.into_iter().map(opened));
    }
    let bodies: Vec<&str> = again.iter().map(|d| d.message.body.as_str()).collect();
    assert_eq!(bodies, ["control"]);
    assert_eq!(again[0].receive_count, 2);
    inbox.ack(&kept.receipt).await.expect("ack kept");
    inbox.ack(&again[0].receipt).await.expect("ack control");
    broker.delete_queue(&address).await;
}

/// A queue made with a size limit reports it, refuses a larger message
/// (attributes counted) before sending it, and delivers one at the limit.
pub async fn a_queue_size_limit_refuses_larger_messages(broker: &dyn TestBroker) {
    let spec = QueueSpec {
        max_message_size: Some(1024),
        ..QueueSpec::default()
    };
    let address = broker.create_queue_with("contract-size", spec).await;
    let outbox = broker.outbox();
    assert_eq!(
        outbox.max_message_size(&address).await.expect("limit"),
        1024
    );
    let inbox = broker.inbox(&address).await;
    assert_eq!(inbox.info().max_message_size, 1024);

    let refused = outbox
        .send(&address, QueueMessage::new("x".repeat(1025)))
        .await;
    assert!(
        matches!(
            refused,
            Err(QueueError::TooLarge {
                size: 1025,
                limit: 1024
            })
        ),
        "{refused:?}"
    );
    // 1000 bytes of body and 30 of attribute (name, data type and value).
    let attributed = QueueMessage::new("y".repeat(1000)).with_string("name", "v".repeat(20));
    let refused = outbox.send(&address, attributed).await;
    assert!(
        matches!(
            refused,
            Err(QueueError::TooLarge {
                size: 1030,
                limit: 1024
            })
        ),
        "{refused:?}"
    );
    outbox
        .send(&address, QueueMessage::new("z".repeat(1024)))
        .await
        .expect("a message at the limit");
    let delivery = receive_one(&*inbox).await;
    assert_eq!(delivery.message.body, "z".repeat(1024));
    inbox.ack(&delivery.receipt).await.expect("ack");
    assert!(
        drained(broker, &address).await,
        "a refused message was sent"
    );
    broker.delete_queue(&address).await;
}

/// The limit an outbox reports for a queue made with the broker's defaults
/// holds: one byte over it is refused, a message of exactly that size is
/// delivered.
pub async fn the_default_size_limit_holds(broker: &dyn TestBroker) {
    let address = broker.create_queue("contract-default-size").await;
    let outbox = broker.outbox();
    let limit = outbox.max_message_size(&address).await.expect("limit");
    assert!(limit >= 1024, "a limit of {limit} bytes");
    let refused = outbox
        .send(&address, QueueMessage::new("x".repeat(limit + 1)))
        .await;
    match refused {
        Err(QueueError::TooLarge { size, limit: said }) => {
            assert_eq!((size, said), (limit + 1, limit));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    outbox
        .send(&address, QueueMessage::new("x".repeat(limit)))
        .await
        .expect("a message at the limit");
    let inbox = broker.inbox(&address).await;
    let delivery = receive_one(&*inbox).await;
    assert_eq!(delivery.message.body.len(), limit);
    inbox.ack(&delivery.receipt).await.expect("ack");
    broker.delete_queue(&address).await;
}

/// An outbox accepts its own broker's addresses and refuses any other as an
/// [`UnsupportedDestination`](QueueError::UnsupportedDestination), for good.
pub async fn unsupported_destinations_are_refused(broker: &dyn TestBroker) {
    let address = broker.create_queue("contract-accepts").await;
    let outbox = broker.outbox();
    assert!(outbox.accepts(&address), "{address}");
    assert!(!outbox.accepts(FOREIGN));
    let refused = outbox.send(FOREIGN, QueueMessage::new("x")).await;
    match refused {
        Err(error @ QueueError::UnsupportedDestination(_)) => assert!(error.is_permanent()),
        other => panic!("expected UnsupportedDestination, got {other:?}"),
    }
    broker.delete_queue(&address).await;
}

/// A send to a queue (or topic) that does not exist fails as missing, and
/// for good: retrying cannot help.
pub async fn missing_destinations_are_refused_for_good(broker: &dyn TestBroker) {
    let address = broker.create_queue("contract-missing").await;
    let missing = format!("{address}-missing");
    let sent = broker.outbox().send(&missing, QueueMessage::new("x")).await;
    match sent {
        Err(error @ (QueueError::NoSuchQueue(_) | QueueError::NoSuchTopic(_))) => {
            assert!(error.is_permanent(), "{error:?}");
        }
        other => panic!("expected NoSuchQueue or NoSuchTopic, got {other:?}"),
    }
    broker.delete_queue(&address).await;
}

/// Defines a module `contract` with one test per check of the contract
/// suite, each running it on the broker that `$broker` builds: an
/// expression evaluated in each test (in an `async` block, so it may
/// `.await`), in the scope of the macro call.
///
/// `contract_tests!(broker)` runs every check; `contract_tests!(broker;
/// name, ...)` runs the named ones. [`broker_tests!`](crate::broker_tests)
/// runs them with the scenarios.
#[macro_export]
macro_rules! contract_tests {
    ($broker:expr; $($check:ident),+ $(,)?) => {
        /// The Inbox/Outbox contract of `asyncmcp_testkit::contract`.
        mod contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $check() {
                    $crate::__private::block_on(async {
                        $crate::contract::$check(&$broker).await;
                    });
                }
            )+
        }
    };
    ($broker:expr) => {
        $crate::contract_tests!($broker;
            a_message_arrives_with_its_body_and_attributes,
            an_empty_receive_waits_and_a_send_wakes_it,
            ack_removes_the_message,
            unknown_receipts_are_invalid,
            release_makes_the_message_visible_at_once,
            extend_keeps_a_message_hidden_past_its_visibility,
            a_queue_size_limit_refuses_larger_messages,
            the_default_size_limit_holds,
            unsupported_destinations_are_refused,
            missing_destinations_are_refused_for_good,
        );
    };
}

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::queue::MAX_WAIT;

const WAIT: Duration = Duration::from_secs(20);

fn broker_with(name: &str, visibility_secs: u64) -> (MemoryBroker, String) {
    let broker = MemoryBroker::new();
    let options = MemoryQueueOptions {
        visibility_timeout: Duration::from_secs(visibility_secs),
        ..MemoryQueueOptions::default()
    };
    let address = broker.create_queue(name, options);
    (broker, address)
}

async fn receive_one(inbox: &MemoryInbox) -> Delivery {
    let mut got = inbox.receive(1, WAIT).await.unwrap();
    assert_eq!(got.len(), 1, "expected one delivery");
    got.remove(0)
}

#[tokio::test(start_paused = true)]
async fn ack_deletes_and_a_receipt_settles_once() {
    let (broker, address) = broker_with("q", 30);
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .unwrap();
    let inbox = broker.inbox(&address).unwrap();
    let delivery = receive_one(&inbox).await;
    inbox.ack(&delivery.receipt).await.unwrap();
    assert_eq!(broker.depth(&address), (0, 0));
    let again = inbox.ack(&delivery.receipt).await;
    assert!(
        matches!(again, Err(QueueError::InvalidReceipt)),
        "{again:?}"
    );
    let bogus = inbox.release(&Receipt("nope".to_owned())).await;
    assert!(matches!(bogus, Err(QueueError::InvalidReceipt)));
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_delivery_is_redelivered_with_a_new_receipt() {
    let (broker, address) = broker_with("q", 5);
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .unwrap();
    let inbox = broker.inbox(&address).unwrap();
    let first = receive_one(&inbox).await;
    assert!(inbox.receive(1, Duration::ZERO).await.unwrap().is_empty());

    let started = Instant::now();
    let second = receive_one(&inbox).await; // long poll wakes at the lapse
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt, first.receipt);

    let stale = inbox.ack(&first.receipt).await;
    assert!(
        matches!(stale, Err(QueueError::InvalidReceipt)),
        "{stale:?}"
    );
    inbox.ack(&second.receipt).await.unwrap();
    assert_eq!(broker.depth(&address), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_receipt_still_acks_until_redelivery() {
    let (broker, address) = broker_with("q", 5);
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .unwrap();
    let inbox = broker.inbox(&address).unwrap();
    let delivery = receive_one(&inbox).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(broker.depth(&address), (1, 0));
    let extended = inbox
        .extend(&delivery.receipt, Duration::from_secs(5))
        .await;
    assert!(matches!(extended, Err(QueueError::InvalidReceipt)));
    inbox.ack(&delivery.receipt).await.unwrap();
    assert_eq!(broker.depth(&address), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn huge_durations_are_capped_not_overflowed() {
    let broker = MemoryBroker::new();
    let options = MemoryQueueOptions {
        visibility_timeout: Duration::MAX,
        ..MemoryQueueOptions::default()
    };
    let address = broker.create_queue("q", options);
    let inbox = broker.inbox(&address).unwrap();
    assert_eq!(inbox.info().visibility_timeout, MAX_VISIBILITY);
    let started = Instant::now();
    assert!(inbox.receive(1, Duration::MAX).await.unwrap().is_empty());
    assert_eq!(started.elapsed(), MAX_WAIT);
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .unwrap();
    let delivery = receive_one(&inbox).await;
    inbox
        .extend(&delivery.receipt, Duration::MAX)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn receive_returns_at_most_max_in_order() {
    let (broker, address) = broker_with("q", 30);
    let outbox = broker.outbox();
    for i in 0..15 {
        outbox
            .send(&address, QueueMessage::new(i.to_string()))
            .await
            .unwrap();
    }
    let inbox = broker.inbox(&address).unwrap();
    let first = inbox.receive(50, WAIT).await.unwrap();
    assert_eq!(first.len(), MAX_RECEIVE_BATCH);
    assert_eq!(first[0].message.body, "0");
    let rest = inbox.receive(3, WAIT).await.unwrap();
    let bodies: Vec<&str> = rest.iter().map(|d| d.message.body.as_str()).collect();
    assert_eq!(bodies, ["10", "11", "12"]);
    assert_eq!(broker.depth(&address), (2, 13));
}

#[tokio::test(start_paused = true)]
async fn redrive_moves_a_message_received_too_often() {
    let broker = MemoryBroker::new();
    let dlq = broker.create_queue("dlq", MemoryQueueOptions::default());
    let options = MemoryQueueOptions::default()
        .with_visibility_timeout(Duration::from_secs(1))
        .with_redrive(RedrivePolicy::new(dlq.clone(), 2));
    let address = broker.create_queue("work", options);
    broker
        .outbox()
        .send(&address, QueueMessage::new("poison"))
        .await
        .unwrap();
    let inbox = broker.inbox(&address).unwrap();
    assert_eq!(receive_one(&inbox).await.receive_count, 1);
    assert_eq!(receive_one(&inbox).await.receive_count, 2);
    // The third receive finds it past the limit: it moves instead.
    assert!(
        inbox
            .receive(1, Duration::from_secs(2))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(broker.depth(&address), (0, 0));
    let dead = receive_one(&broker.inbox(&dlq).unwrap()).await;
    assert_eq!(dead.message.body, "poison");
    assert_eq!(dead.receive_count, 1);
}

// Sending to a missing or foreign address is in the Inbox/Outbox contract
// (asyncmcp-testkit), as are the round trip, release, extend, an empty wait
// and the size limit.
#[tokio::test(start_paused = true)]
async fn addresses_are_checked() {
    let broker = MemoryBroker::new();
    let outbox = broker.outbox();
    assert!(outbox.accepts("memory://anything"));
    assert!(!outbox.accepts("https://sqs.us-east-1.amazonaws.com/1/q"));
    assert!(matches!(
        broker.inbox("memory://missing"),
        Err(QueueError::NoSuchQueue(_))
    ));
    assert!(matches!(
        broker.inbox("http://localhost/q"),
        Err(QueueError::UnsupportedDestination(_))
    ));
    assert_eq!(broker.depth("memory://missing"), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn create_is_idempotent_and_delete_ends_waits() {
    let broker = MemoryBroker::new();
    let address = broker.create_queue("q", MemoryQueueOptions::default());
    assert_eq!(address, "memory://q");
    assert_eq!(
        broker.outbox().max_message_size(&address).await.unwrap(),
        DEFAULT_MAX_MESSAGE_SIZE
    );
    broker
        .outbox()
        .send(&address, QueueMessage::new("x"))
        .await
        .unwrap();
    let options = MemoryQueueOptions {
        visibility_timeout: Duration::from_secs(1),
        ..MemoryQueueOptions::default()
    };
    assert_eq!(broker.create_queue("q", options), address);
    assert_eq!(broker.depth(&address), (1, 0));
    let inbox = broker.inbox(&address).unwrap();
    assert_eq!(inbox.info().visibility_timeout, Duration::from_secs(30));
    receive_one(&inbox).await;

    let waiting = tokio::spawn(async move { inbox.receive(1, WAIT).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(broker.delete_queue(&address));
    assert!(!broker.delete_queue(&address));
    let ended = waiting.await.unwrap();
    assert!(
        matches!(ended, Err(QueueError::NoSuchQueue(_))),
        "{ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn competing_consumers_each_get_a_message() {
    let (broker, address) = broker_with("q", 30);
    let a = broker.inbox(&address).unwrap();
    let b = broker.inbox(&address).unwrap();
    let first = tokio::spawn(async move { a.receive(1, WAIT).await });
    let second = tokio::spawn(async move { b.receive(1, WAIT).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outbox = broker.outbox();
    outbox.send(&address, QueueMessage::new("1")).await.unwrap();
    outbox.send(&address, QueueMessage::new("2")).await.unwrap();
    let mut bodies = vec![
        first.await.unwrap().unwrap().remove(0).message.body,
        second.await.unwrap().unwrap().remove(0).message.body,
    ];
    bodies.sort();
    assert_eq!(bodies, ["1", "2"]);
}

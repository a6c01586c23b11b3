//! The library's batch client ([`asyncmcp::client::batch`]) on the
//! in-process broker, against a `QueueServer` with the demo tools: answers
//! by key, the bound in flight, reattaching after a restart, shared reply
//! queues and forged answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use asyncmcp::client::batch::{Batch, Call, key_of, request_id};
use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::{Outbox, QueueMessage};
use asyncmcp::wire::signing::SigningKeys;
use asyncmcp::{MemoryBroker, QueueServer};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use asyncmcp_testkit::{eventually, unique_name};
use serde_json::json;
use tokio_util::sync::{CancellationToken, DropGuard};

/// A demo server on a new request queue, stopped when dropped.
struct Server {
    requests: String,
    stats: Arc<DemoStats>,
    _stop: DropGuard,
}

fn server(broker: &MemoryBroker, signing: Option<SigningKeys>) -> Server {
    let requests = broker.create_queue(&unique_name("requests"), MemoryQueueOptions::default());
    let stats = Arc::new(DemoStats::default());
    let stop = CancellationToken::new();
    let mut builder = QueueServer::builder(
        broker.inbox(&requests).expect("queue exists"),
        broker.outbox(),
    )
    .wait(Duration::from_millis(200));
    if let Some(keys) = signing {
        builder = builder.signing(keys, true);
    }
    builder
        .build(DemoServer::factory(stats.clone()))
        .spawn(stop.clone());
    Server {
        requests,
        stats,
        _stop: stop.drop_guard(),
    }
}

fn reply_queue(broker: &MemoryBroker) -> String {
    broker.create_queue(&unique_name("replies"), MemoryQueueOptions::default())
}

fn batch(broker: &MemoryBroker, server: &Server, client_id: &str, replies: &str) -> Batch {
    Batch::builder(&server.requests)
        .client_id(client_id)
        .wait(Duration::from_millis(200))
        .build(
            broker.inbox(replies).expect("queue exists"),
            broker.outbox(),
        )
}

fn add(a: i64, b: i64) -> Call {
    Call::new("add", json!({"a": a, "b": b}).as_object().cloned())
}

fn text(answer: &asyncmcp::client::batch::Answer) -> String {
    answer.raw["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn request_ids_name_their_key_and_call() {
    let id = request_id("key.with.dots", &add(1, 2));
    assert_eq!(key_of(&id), Some("key.with.dots"));
    assert_eq!(id, request_id("key.with.dots", &add(1, 2)), "stable");
    assert_ne!(id, request_id("key.with.dots", &add(1, 3)), "another call");
    assert_eq!(key_of("7"), None);
    assert_eq!(key_of("b1.nothex.key"), None);
}

#[tokio::test]
async fn answers_come_back_by_key_with_at_most_the_bound_pending() {
    let broker = MemoryBroker::new();
    let server = server(&broker, None);
    let replies = reply_queue(&broker);
    let mut batch = Batch::builder(&server.requests)
        .in_flight(3)
        .wait(Duration::from_millis(200))
        .build(
            broker.inbox(&replies).expect("queue exists"),
            broker.outbox(),
        );
    let submitter = batch.submitter();
    let sending = submitter.clone();
    let sends = tokio::spawn(async move {
        let mut most = 0;
        for n in 0..20 {
            sending
                .submit(&format!("k{n}"), &add(n, 100))
                .await
                .expect("sent");
            most = most.max(sending.pending());
        }
        most
    });
    let mut answers = HashMap::new();
    while answers.len() < 20 {
        let answer = tokio::time::timeout(Duration::from_secs(10), batch.next())
            .await
            .expect("an answer in time")
            .expect("open");
        assert!(submitter.pending() <= 3);
        batch.ack(&answer).await.expect("deleted");
        answers.insert(answer.key.clone(), text(&answer));
    }
    assert!(
        sends.await.expect("sender") <= 3,
        "never more than 3 pending"
    );
    for n in 0..20 {
        assert_eq!(answers[&format!("k{n}")], (n + 100).to_string());
    }
    assert_eq!(broker.depth(&replies), (0, 0), "every answer deleted");
}

#[tokio::test]
async fn a_restarted_batch_collects_what_came_while_it_was_down_without_sending_again() {
    let broker = MemoryBroker::new();
    let server = server(&broker, None);
    let replies = reply_queue(&broker);
    let first = batch(&broker, &server, "nightly.1", &replies);
    let submitter = first.submitter();
    for n in 0..5 {
        submitter
            .submit(&n.to_string(), &add(n, n))
            .await
            .expect("sent");
    }
    drop(submitter);
    drop(first);
    assert!(
        eventually(Duration::from_secs(10), || broker.depth(&replies).0 == 5).await,
        "the answers wait on the reply queue"
    );
    let mut second = batch(&broker, &server, "nightly.1", &replies);
    let submitter = second.submitter();
    for n in 0..5 {
        submitter
            .reattach(&n.to_string(), &add(n, n))
            .expect("reattached");
    }
    let mut got = HashMap::new();
    while got.len() < 5 {
        let answer = tokio::time::timeout(Duration::from_secs(10), second.next())
            .await
            .expect("in time")
            .expect("open");
        second.ack(&answer).await.expect("deleted");
        got.insert(answer.key.clone(), text(&answer));
    }
    for n in 0..5 {
        assert_eq!(got[&n.to_string()], (2 * n).to_string());
    }
    assert_eq!(
        server.stats.calls.load(Ordering::SeqCst),
        5,
        "nothing ran again"
    );
    assert_eq!(submitter.pending(), 0);
}

#[tokio::test]
async fn batches_sharing_a_reply_queue_and_keys_each_get_their_own_answers() {
    let broker = MemoryBroker::new();
    let server = server(&broker, None);
    let replies = reply_queue(&broker);
    let mut one = batch(&broker, &server, "one", &replies);
    let mut two = batch(&broker, &server, "two", &replies);
    for n in 0..5 {
        one.submitter()
            .submit(&n.to_string(), &add(n, 1000))
            .await
            .expect("sent");
        two.submitter()
            .submit(&n.to_string(), &add(n, 2000))
            .await
            .expect("sent");
    }
    for (batch, base) in [(&mut one, 1000), (&mut two, 2000)] {
        let mut got = HashMap::new();
        while got.len() < 5 {
            let answer = tokio::time::timeout(Duration::from_secs(10), batch.next())
                .await
                .expect("in time")
                .expect("open");
            batch.ack(&answer).await.expect("deleted");
            got.insert(answer.key.clone(), text(&answer));
        }
        for n in 0..5 {
            assert_eq!(got[&n.to_string()], (n + base).to_string());
        }
    }
}

#[tokio::test]
async fn a_forged_answer_is_not_taken_when_answers_are_signed() {
    let broker = MemoryBroker::new();
    let keys = SigningKeys::new(vec![7u8; 32], None).expect("a key");
    let server = server(&broker, Some(keys.clone()));
    let replies = reply_queue(&broker);
    let mut batch = Batch::builder(&server.requests)
        .client_id("signed")
        .wait(Duration::from_millis(200))
        .signing(keys, true)
        .build(
            broker.inbox(&replies).expect("queue exists"),
            broker.outbox(),
        );
    // Whoever can write to the reply queue knows the ClientId and can work
    // out the request id from the input: it answers first.
    let call = add(2, 3);
    let forged = json!({"jsonrpc": "2.0", "id": request_id("k", &call),
        "result": {"content": [{"type": "text", "text": "666"}]}});
    broker
        .outbox()
        .send(
            &replies,
            QueueMessage::new(forged.to_string()).with_string("ClientId", "signed"),
        )
        .await
        .expect("forged");
    batch.submitter().submit("k", &call).await.expect("sent");
    let answer = tokio::time::timeout(Duration::from_secs(10), batch.next())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(text(&answer), "5", "the server's answer, not the forgery");
    batch.ack(&answer).await.expect("deleted");
    assert!(
        eventually(Duration::from_secs(5), || broker.depth(&replies) == (0, 0)).await,
        "the forgery was deleted"
    );
}

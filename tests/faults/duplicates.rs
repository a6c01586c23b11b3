//! `duplicates`: every request is sent twice, as a client that heard nothing
//! would send it again.

use std::collections::HashMap;
use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox, QueueMessage};
use asyncmcp_testkit::{aws, unique_name};
use serde_json::{Value, json};

use crate::process::{self, Effects};

/// Sends 100 `work` requests twice each, back to back: each is answered
/// twice with the same response and its effect happens once (the second
/// copy is replayed from the first's answer, or, arriving while the first
/// still runs, left on the queue and replayed when it comes back).
pub(crate) async fn duplicates() {
    const REQUESTS: usize = 100;
    let ls = aws::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    // Short, so that a copy left while the first runs comes back soon.
    let options = SqsQueueOptions::default().with_visibility_timeout(Duration::from_secs(2));
    let requests = sqs::create_queue(&client, &unique_name("dups"), &options)
        .await
        .expect("queue");
    let replies = sqs::create_queue(
        &client,
        &unique_name("dups-replies"),
        &SqsQueueOptions::default(),
    )
    .await
    .expect("queue");
    let effects = Effects::new("duplicates");
    let mut server = process::spawn_server(&ls.aws_env(), &requests, &effects).await;

    let outbox = SqsOutbox::new(client.clone());
    let sends = (0..REQUESTS).map(|i| {
        let body = json!({"jsonrpc":"2.0","id":i,"method":"tools/call",
            "params":{"name":"work","arguments":{"id":format!("call-{i}"),"ms":50}}});
        let message = QueueMessage::new(body.to_string())
            .with_string("ReplyTo", &replies)
            .with_string("ClientId", "resending-client");
        let (outbox, requests) = (outbox.clone(), requests.clone());
        async move {
            outbox.send(&requests, message.clone()).await?;
            outbox.send(&requests, message).await
        }
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("send");
    }

    let inbox = SqsInbox::open(client.clone(), &replies)
        .await
        .expect("open");
    let mut answers: HashMap<u64, Vec<Value>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while answers.values().map(Vec::len).sum::<usize>() < 2 * REQUESTS
        && tokio::time::Instant::now() < deadline
    {
        for delivery in inbox
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
        {
            let _ = inbox.ack(&delivery.receipt).await;
            let reply: Value = serde_json::from_str(&delivery.message.body).expect("JSON");
            if let Some(id) = reply["id"].as_u64() {
                answers.entry(id).or_default().push(reply);
            }
        }
    }
    let _ = server.start_kill();
    let _ = sqs::delete_queue(&client, &requests).await;
    let _ = sqs::delete_queue(&client, &replies).await;

    let answered = answers.values().map(Vec::len).sum::<usize>();
    let identical = answers
        .values()
        .filter(|pair| pair.len() == 2 && pair[0] == pair[1])
        .count();
    let counts = effects.counts();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "duplicates: {REQUESTS} requests sent twice, {answered} answers, {identical} identical pairs, {duplicated} duplicated effects"
    );
    assert_eq!(answered, 2 * REQUESTS, "both copies answered");
    assert_eq!(identical, REQUESTS, "both copies got the same answer");
    assert_eq!(counts.len(), REQUESTS, "every effect happened");
    assert_eq!(duplicated, 0, "no effect happened twice");
}

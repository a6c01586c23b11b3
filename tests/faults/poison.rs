//! `poison`: a request that kills the server every time it runs.

use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Delivery, Inbox, Outbox, QueueMessage};
use asyncmcp_testkit::{aws, unique_name};
use serde_json::json;

use crate::process::{self, Effects};

/// Deliveries the server allows before it dead-letters a request.
const MAX_RECEIVES: u32 = 3;

/// A poison request (its tool aborts the process) arrives among 50 ordinary
/// calls; a supervisor restarts the server each time it dies. The poison
/// runs `MAX_RECEIVES` times, then its next delivery goes to the dead-letter
/// queue with the reason, and the ordinary calls are all answered meanwhile.
pub(crate) async fn poison() {
    const CALLS: usize = 50;
    let ls = aws::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    // Short, so that what a dead server held comes back soon.
    let short = SqsQueueOptions::default().with_visibility_timeout(Duration::from_secs(2));
    let requests = sqs::create_queue(&client, &unique_name("poison"), &short)
        .await
        .expect("queue");
    let dead_letters = sqs::create_queue(
        &client,
        &unique_name("poison-dlq"),
        &SqsQueueOptions::default(),
    )
    .await
    .expect("queue");
    let poisoner_replies = sqs::create_queue(
        &client,
        &unique_name("poison-replies"),
        &SqsQueueOptions::default(),
    )
    .await
    .expect("queue");
    let mut env = ls.aws_env();
    env.push((
        "FAULTS_DEAD_LETTER",
        format!("{dead_letters} {MAX_RECEIVES}"),
    ));
    let effects = Effects::new("poison");
    let mut server = process::spawn_server(&env, &requests, &effects).await;

    let session = process::connect(&client, &requests).await;
    let poison = json!({"jsonrpc":"2.0","id":"poison-1","method":"tools/call",
        "params":{"name":"crash","arguments":{"id":"poison"}}});
    SqsOutbox::new(client.clone())
        .send(
            &requests,
            QueueMessage::new(poison.to_string())
                .with_string("ReplyTo", &poisoner_replies)
                .with_string("ClientId", "poisoner"),
        )
        .await
        .expect("send the poison");
    let mut load = process::start_load(session.peer().clone(), CALLS, 5, 100);

    let dead_letter_inbox = SqsInbox::open(client.clone(), &dead_letters)
        .await
        .expect("open");
    let mut crashes = 0;
    let mut outcome = None;
    let mut dead: Option<Delivery> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while (outcome.is_none() || dead.is_none()) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = server.wait() => {
                crashes += 1;
                server = process::spawn_server(&env, &requests, &effects).await;
            }
            done = &mut load, if outcome.is_none() => outcome = Some(done.expect("load")),
            _ = tokio::time::sleep(Duration::from_millis(500)), if dead.is_none() => {
                let received = dead_letter_inbox.receive(10, Duration::ZERO).await.expect("receive");
                dead = received.into_iter().find(|d| d.message.body.contains("poison-1"));
            }
        }
    }
    let _ = server.start_kill();
    let _ = session.cancel().await;
    let _ = sqs::delete_queue(&client, &requests).await;
    let _ = sqs::delete_queue(&client, &dead_letters).await;
    let _ = sqs::delete_queue(&client, &poisoner_replies).await;

    let outcome = outcome.expect("the ordinary calls finished");
    let dead = dead.expect("the poison reached the dead-letter queue");
    let reason = dead
        .message
        .attribute("DeadLetterReason")
        .unwrap_or_default()
        .to_owned();
    let runs = effects.counts().get("poison").copied().unwrap_or(0);
    // Requests a dying server held beside the poison had their receive
    // counts used up too; those are dead-lettered and their callers told.
    let (told, lost): (Vec<_>, Vec<_>) = outcome
        .lost
        .iter()
        .partition(|(_, text)| text.contains("dead-lettered"));
    eprintln!(
        "poison: 1 poison request, ran {runs} times, {crashes} crashes, dead-lettered with reason {reason:?}; {CALLS} calls meanwhile: {} answered, {} dead-lettered beside it (callers told), {} lost",
        outcome.answered,
        told.len(),
        lost.len()
    );
    assert_eq!(
        runs, MAX_RECEIVES as usize,
        "the poison ran once per allowed delivery"
    );
    assert!(crashes >= runs, "each run killed the server");
    assert!(
        reason.contains(&format!("delivered {} times", MAX_RECEIVES + 1)),
        "{reason}"
    );
    assert_eq!(
        dead.message.attribute("ReceiveCount"),
        Some((MAX_RECEIVES + 1).to_string().as_str())
    );
    assert!(
        dead.message.body.contains("poison-1"),
        "the request itself was kept"
    );
    assert!(lost.is_empty(), "calls left without an answer: {lost:?}");
}

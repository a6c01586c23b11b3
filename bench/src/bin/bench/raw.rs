//! The ceiling: an SQS request/reply round trip with no MCP in it.
//!
//! The client sends each request's id as the message body; the server
//! echoes the body to the reply queue; the client matches replies to
//! waiting calls by that id. Every send and delete goes through the same
//! adaptive [`Batcher`] our transport uses (batch when busy, at once when
//! idle), receives take up to ten messages, and each side runs one long
//! poll. What is left out is
//! everything MCP: JSON-RPC, sessions, attributes, ordering, replay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use asyncmcp::queue::QueueError;
use asyncmcp::queue::batch::{Batcher, BatcherConfig, FlushResult};
use asyncmcp::queue::sqs::{self, ApiCallCounter, Client};
use aws_sdk_sqs::error::BuildError;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use tokio::sync::oneshot;

use crate::RoleArgs;
use crate::protocol;

/// How long a raw call waits for its reply before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Long polls of the raw server: one, so that each receive comes back as
/// full as the load allows.
const SERVER_POLLERS: usize = 1;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

/// The raw server: receive, echo, delete.
pub async fn serve(args: RoleArgs) -> anyhow::Result<()> {
    let counter = ApiCallCounter::new();
    let client = sqs::client_with_counter(&sqs::sdk_config_from_env().await, &counter);
    let replies = sender(client.clone(), args.reply_queue.clone());
    let deletes = deleter(client.clone(), args.request_queue.clone());
    for _ in 0..args.pollers.unwrap_or(SERVER_POLLERS) {
        let (client, queue) = (client.clone(), args.request_queue.clone());
        let (replies, deletes) = (replies.clone(), deletes.clone());
        tokio::spawn(async move {
            poll(&client, &queue, |body, receipt| {
                let (replies, deletes) = (replies.clone(), deletes.clone());
                tokio::spawn(async move {
                    let (sent, deleted) =
                        tokio::join!(replies.submit(body), deletes.submit(receipt));
                    if let Err(e) = sent.and(deleted) {
                        tracing::warn!(error = %e, "raw server: reply or delete failed");
                    }
                });
            })
            .await
        });
    }
    protocol::serve_server(&counter).await
}

/// The raw client: send ids, match echoed ids, delete.
pub async fn drive(args: RoleArgs) -> anyhow::Result<()> {
    let counter = ApiCallCounter::new();
    let client = sqs::client_with_counter(&sqs::sdk_config_from_env().await, &counter);
    let requests = sender(client.clone(), args.request_address.clone());
    let deletes = deleter(client.clone(), args.reply_queue.clone());
    let pending: Pending = Arc::default();
    for _ in 0..args
        .pollers
        .unwrap_or(asyncmcp::QueueClientTransport::builder("").config().pollers)
    {
        let (client, queue) = (client.clone(), args.reply_queue.clone());
        let (deletes, pending) = (deletes.clone(), pending.clone());
        tokio::spawn(async move {
            poll(&client, &queue, |body, receipt| {
                let waiter = body.parse::<u64>().ok().and_then(|id| {
                    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.remove(&id)
                });
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
                let deletes = deletes.clone();
                tokio::spawn(async move { deletes.submit(receipt).await });
            })
            .await
        });
    }
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let call = move || {
        let (requests, pending, next_id) = (requests.clone(), pending.clone(), next_id.clone());
        async move {
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, tx);
            requests.submit(id.to_string()).await?;
            tokio::time::timeout(CALL_TIMEOUT, rx)
                .await
                .context("no reply")?
                .context("reply lost")
        }
    };
    for _ in 0..20 {
        call().await?;
    }
    protocol::serve_client(&counter, call).await
}

/// Long-polls `queue` for up to ten messages at a time, handing each body
/// and receipt handle to `each`.
async fn poll(client: &Client, queue: &str, mut each: impl FnMut(String, String)) {
    loop {
        let received = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .send()
            .await;
        match received {
            Ok(output) => {
                for message in output.messages.unwrap_or_default() {
                    if let (Some(body), Some(receipt)) = (message.body, message.receipt_handle) {
                        each(body, receipt);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "raw receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Sends bodies to `queue`, batched.
fn sender(client: Client, queue: String) -> Batcher<String, ()> {
    Batcher::new(BatcherConfig::default(), move |bodies: Vec<String>| {
        let (client, queue) = (client.clone(), queue.clone());
        async move {
            let count = bodies.len();
            let entries = entries(bodies, |id, body| {
                SendMessageBatchRequestEntry::builder()
                    .id(id)
                    .message_body(body)
                    .build()
            })?;
            let output = client
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await;
            outcome(output.map(|o| o.failed.len()), count)
        }
    })
}

/// Deletes receipt handles from `queue`, batched.
fn deleter(client: Client, queue: String) -> Batcher<String, ()> {
    Batcher::new(BatcherConfig::default(), move |receipts: Vec<String>| {
        let (client, queue) = (client.clone(), queue.clone());
        async move {
            let count = receipts.len();
            let entries = entries(receipts, |id, receipt| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(receipt)
                    .build()
            })?;
            let output = client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await;
            outcome(output.map(|o| o.failed.len()), count)
        }
    })
}

/// One batch entry per item, built by `build` from its index (the entry
/// id) and the item.
fn entries<E>(
    items: Vec<String>,
    build: impl Fn(String, String) -> Result<E, BuildError>,
) -> Result<Vec<E>, QueueError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| build(i.to_string(), item))
        .collect::<Result<_, _>>()
        .map_err(|e| QueueError::from_source("cannot build a batch entry", e))
}

/// One result per entry: the raw bench treats a partly failed batch as
/// failed as a whole (it never happens on a healthy endpoint).
fn outcome<E>(failed: Result<usize, E>, count: usize) -> FlushResult<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match failed {
        Ok(0) => Ok((0..count).map(|_| Ok(())).collect()),
        Ok(n) => Err(QueueError::service(format!("{n} entries failed"))),
        Err(e) => Err(QueueError::from_source("the batch call failed", e)),
    }
}

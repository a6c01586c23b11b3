//! The ceiling: an SQS request/reply round trip with no MCP in it.
//!
//! The client sends each request's id as the message body; the server
//! echoes the body to the reply queue; the client matches replies to
//! waiting calls by that id. Every send and delete goes through the same
//! adaptive [`Batcher`] our transport uses (batch when busy, at once when
//! idle), receives take up to ten messages, and each side runs one long
//! poll. What is left out is
//! everything MCP: JSON-RPC, sessions, attributes, ordering, replay.
//!
//! When an address is an SNS topic (`raw-sns`, the ceiling of SNS+SQS), that
//! side publishes through the library's [`SnsOutbox`], which batches
//! `PublishBatch` calls with the same adaptive batcher; the queue subscribed
//! to the topic (raw delivery) is received from as above.
//!
//! With `--attributes SET` (`--scenario attributes`), requests and replies
//! carry that set's message attributes (`attributes.rs`) and every receive
//! asks for all attributes, as our inbox does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use asyncmcp::queue::batch::{Batcher, BatcherConfig, FlushResult};
use asyncmcp::queue::sns::{self, SnsOutbox};
use asyncmcp::queue::sqs::{self, ApiCallCounter, Client};
use asyncmcp::queue::{AttributeValue, Attributes, Outbox, QueueError, QueueMessage, is_topic_arn};
use aws_sdk_sqs::error::BuildError;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};
use tokio::sync::oneshot;

use crate::RoleArgs;
use crate::protocol;

/// How long a raw call waits for its reply before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Long polls of the raw server: one, so that each receive comes back as
/// full as the load allows.
const SERVER_POLLERS: usize = 1;

/// Waiting calls by id; each is told whether its reply carried every
/// attribute it should.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>>;

/// The raw server: receive, echo, delete.
pub async fn serve(args: RoleArgs) -> anyhow::Result<()> {
    let counter = ApiCallCounter::new();
    let sdk = sqs::sdk_config_from_env().await;
    let client = sqs::client_with_counter(&sdk, &counter);
    let sns_client = sns::client_with_counter(&sdk, &counter);
    let (request_attributes, reply_attributes) = attributes(&args)?;
    let expected = request_attributes.len();
    let replies = Arc::new(Publisher::new(
        (&client, &sns_client),
        &args.reply_address,
        reply_attributes,
    ));
    let deletes = deleter(client.clone(), args.request_queue.clone());
    let with_attributes = args.attributes.is_some();
    for _ in 0..args.pollers.unwrap_or(SERVER_POLLERS) {
        let (client, queue) = (client.clone(), args.request_queue.clone());
        let (replies, deletes) = (replies.clone(), deletes.clone());
        tokio::spawn(async move {
            poll(&client, &queue, with_attributes, |body, receipt, count| {
                let (replies, deletes) = (replies.clone(), deletes.clone());
                // A request that lost attributes on the way goes unanswered:
                // its call fails, and the run shows errors.
                let answer = !with_attributes || count == expected;
                if !answer {
                    tracing::warn!(count, expected, "raw server: a request lacks attributes");
                }
                tokio::spawn(async move {
                    let reply = async {
                        match answer {
                            true => replies.submit(body).await,
                            false => Ok(()),
                        }
                    };
                    let (sent, deleted) = tokio::join!(reply, deletes.submit(receipt));
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
    let sdk = sqs::sdk_config_from_env().await;
    let client = sqs::client_with_counter(&sdk, &counter);
    let sns_client = sns::client_with_counter(&sdk, &counter);
    let (request_attributes, reply_attributes) = attributes(&args)?;
    let expected = reply_attributes.len();
    let requests = Arc::new(Publisher::new(
        (&client, &sns_client),
        &args.request_address,
        request_attributes,
    ));
    let deletes = deleter(client.clone(), args.reply_queue.clone());
    let with_attributes = args.attributes.is_some();
    let pending: Pending = Arc::default();
    for _ in 0..args
        .pollers
        .unwrap_or(asyncmcp::QueueClientTransport::builder("").config().pollers)
    {
        let (client, queue) = (client.clone(), args.reply_queue.clone());
        let (deletes, pending) = (deletes.clone(), pending.clone());
        tokio::spawn(async move {
            poll(&client, &queue, with_attributes, |body, receipt, count| {
                let waiter = body.parse::<u64>().ok().and_then(|id| {
                    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.remove(&id)
                });
                if let Some(waiter) = waiter {
                    let _ = waiter.send(!with_attributes || count == expected);
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
            let complete = tokio::time::timeout(CALL_TIMEOUT, rx)
                .await
                .context("no reply")?
                .context("reply lost")?;
            anyhow::ensure!(complete, "the reply lacks attributes");
            Ok(())
        }
    };
    for _ in 0..20 {
        call().await?;
    }
    protocol::serve_client(&counter, call).await
}

/// The request and reply attributes of `--attributes` (none without it).
fn attributes(args: &RoleArgs) -> anyhow::Result<(Attributes, Attributes)> {
    match args.attributes {
        Some(set) => set.attributes(&args.reply_address),
        None => Ok(Default::default()),
    }
}

/// Long-polls `queue` for up to ten messages at a time, handing each body,
/// receipt handle and number of message attributes to `each`;
/// `with_attributes`, asking for all message attributes as our inbox does.
async fn poll(
    client: &Client,
    queue: &str,
    with_attributes: bool,
    mut each: impl FnMut(String, String, usize),
) {
    loop {
        let mut receive = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(20);
        if with_attributes {
            receive = receive.message_attribute_names("All");
        }
        let received = receive.send().await;
        match received {
            Ok(output) => {
                for message in output.messages.unwrap_or_default() {
                    let count = message.message_attributes.as_ref().map_or(0, |a| a.len());
                    if let (Some(body), Some(receipt)) = (message.body, message.receipt_handle) {
                        each(body, receipt, count);
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

/// Where one side sends: a queue (batched here) or a topic (the library's
/// batched SNS outbox), every message with the same attributes.
enum Publisher {
    Sqs(Batcher<String, ()>),
    Sns {
        outbox: SnsOutbox,
        topic: String,
        attributes: Attributes,
    },
}

impl Publisher {
    /// A publisher to `address` through one of the clients.
    fn new(
        (sqs_client, sns_client): (&Client, &sns::Client),
        address: &str,
        attributes: Attributes,
    ) -> Self {
        if is_topic_arn(address) {
            return Publisher::Sns {
                outbox: SnsOutbox::new(sns_client.clone()),
                topic: address.to_owned(),
                attributes,
            };
        }
        Publisher::Sqs(sender(sqs_client.clone(), address.to_owned(), &attributes))
    }

    /// Sends one message of `body`.
    async fn submit(&self, body: String) -> Result<(), QueueError> {
        match self {
            Publisher::Sqs(batcher) => batcher.submit(body).await,
            Publisher::Sns {
                outbox,
                topic,
                attributes,
            } => {
                let message = QueueMessage {
                    attributes: attributes.clone(),
                    ..QueueMessage::new(body)
                };
                outbox.send(topic, message).await
            }
        }
    }
}

/// Sends bodies to `queue` with `attributes`, batched.
fn sender(client: Client, queue: String, attributes: &Attributes) -> Batcher<String, ()> {
    let attributes = Arc::new(sdk_attributes(attributes));
    Batcher::new(BatcherConfig::default(), move |bodies: Vec<String>| {
        let (client, queue, attributes) = (client.clone(), queue.clone(), attributes.clone());
        async move {
            let count = bodies.len();
            let entries = entries(bodies, |id, body| {
                SendMessageBatchRequestEntry::builder()
                    .id(id)
                    .message_body(body)
                    .set_message_attributes((!attributes.is_empty()).then(|| (*attributes).clone()))
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

/// `attributes` as the SQS SDK takes them.
fn sdk_attributes(attributes: &Attributes) -> HashMap<String, MessageAttributeValue> {
    attributes
        .iter()
        .filter_map(|(name, value)| {
            let data_type = match value {
                AttributeValue::String(_) => "String",
                AttributeValue::Number(_) => "Number",
            };
            let value = MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value.as_str())
                .build();
            match value {
                Ok(value) => Some((name.clone(), value)),
                Err(e) => {
                    tracing::error!(error = %e, name, "raw: cannot build an attribute");
                    None
                }
            }
        })
        .collect()
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

//! Drains a batch's reply queue into [`Batch::next`](super::Batch::next).
//!
//! Unlike the transport's poller, an answer is not deleted when it is
//! received: it is handed over with its receipt, and deleted when the
//! caller has kept it ([`Batch::ack`](super::Batch::ack)). What is not an
//! answer to a pending call of this batch is settled here:
//!
//! * another `ClientId`'s message: released for its owner, or deleted as an
//!   orphan once received `orphan_after` times (the broker's count, which no
//!   sender can forge);
//! * a message refused by the signature check, or unreadable: deleted, with
//!   a warning (a forgery cannot make us wait, nor take the real answer's
//!   place);
//! * a notification (progress, logs): deleted;
//! * an answer to no pending call (a duplicate, an answer already kept, an
//!   older version of a call, a made-up id): deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rmcp::model::{CallToolResult, ErrorData, RequestId};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Answer, Shared, key_of};
use crate::queue::backoff::Backoff;
use crate::queue::{Delivery, MAX_RECEIVE_BATCH};
use crate::wire::{self, attr};

/// How much of attacker-controlled text a log line shows.
const LOGGED: usize = 64;

/// The pause after a receive that brought only other clients' messages.
const STEP_ASIDE: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));

/// A receiver's settings.
pub(super) struct Settings {
    pub(super) wait: Duration,
    pub(super) orphan_after: u32,
}

/// What a reply body says, read leniently.
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// What to do with one delivery.
enum Verdict {
    Answer(Box<Answer>),
    Release,
    Delete,
}

pub(super) async fn run(shared: Arc<Shared>, sender: mpsc::Sender<Answer>, settings: Settings) {
    let inbox = shared.inbox.clone();
    let mut backoff = Backoff::after_errors();
    let mut step_aside = STEP_ASIDE;
    let orphan_after = settings.orphan_after.max(1);
    while !shared.stop.is_cancelled() {
        // Not cancelled half-way: what an abandoned receive took would stay
        // hidden for the visibility timeout.
        let deliveries = match inbox.receive(MAX_RECEIVE_BATCH, settings.wait).await {
            Ok(deliveries) => {
                backoff.reset();
                deliveries
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff.pause(), "batch reply queue receive failed");
                if !backoff.wait(&shared.stop).await {
                    return;
                }
                continue;
            }
        };
        let received = deliveries.len();
        let mut others = 0;
        let mut delete = Vec::new();
        let mut release = Vec::new();
        for delivery in deliveries {
            match judge(&shared, &delivery, orphan_after) {
                Verdict::Answer(answer) => {
                    if sender.send(*answer).await.is_err() {
                        // Nobody is collecting: it comes back after the
                        // visibility timeout, to the next run.
                        return;
                    }
                }
                Verdict::Release => {
                    others += 1;
                    release.push(delivery.receipt);
                }
                Verdict::Delete => delete.push(delivery.receipt),
            }
        }
        let deletes = delete.iter().map(|receipt| inbox.ack(receipt));
        let releases = release.iter().map(|receipt| inbox.release(receipt));
        let (deleted, released) = futures::join!(join_all(deletes), join_all(releases));
        for error in deleted.into_iter().chain(released).filter_map(Result::err) {
            tracing::debug!(%error, "could not settle a reply that is no answer of ours");
        }
        if received > 0 && others == received {
            if !step_aside.wait(&shared.stop).await {
                return;
            }
        } else {
            step_aside.reset();
        }
    }
}

fn clip(text: &str) -> &str {
    text.char_indices()
        .nth(LOGGED)
        .map_or(text, |(end, _)| &text[..end])
}

/// An answer whose offloaded payload was refused (gone, too large, not
/// ours to fetch) stands for an error answer to the call its `RequestId`
/// names, when unsigned answers are trusted anyway (anyone able to send it
/// could send that error outright). With signatures required it cannot be
/// verified without its body and is deleted like any refused answer.
#[cfg(feature = "offload")]
fn payload_refused(
    shared: &Shared,
    refused: &crate::queue::Refused,
    message: &crate::queue::QueueMessage,
) -> Option<Reply> {
    refused.downcast_ref::<crate::queue::layer::PayloadRefused>()?;
    if !shared.unsigned_trusted {
        return None;
    }
    let id = wire::request_id_from_text(message.attribute(attr::REQUEST_ID)?);
    let error = ErrorData::internal_error(refused.to_string(), None);
    Some(Reply {
        id: Some(id),
        method: None,
        result: None,
        error: serde_json::to_value(error).ok(),
    })
}

fn judge(shared: &Shared, delivery: &Delivery, orphan_after: u32) -> Verdict {
    let message = &delivery.message;
    if let Some(theirs) = message.attribute(attr::CLIENT_ID)
        && theirs != shared.client_id
    {
        if delivery.receive_count >= orphan_after {
            tracing::warn!(message_id = %clip(&delivery.message_id), owner = %clip(theirs), receive_count = delivery.receive_count, "deleting an orphan reply: its client is taken to be gone");
            return Verdict::Delete;
        }
        return Verdict::Release;
    }
    let reply: Reply = if let Some(refused) = &delivery.refused {
        #[cfg(feature = "offload")]
        if let Some(reply) = payload_refused(shared, refused, message) {
            reply
        } else {
            tracing::warn!(message_id = %clip(&delivery.message_id), reason = %refused, "deleting a refused reply");
            return Verdict::Delete;
        }
        #[cfg(not(feature = "offload"))]
        {
            tracing::warn!(message_id = %clip(&delivery.message_id), reason = %refused, "deleting a reply that failed the signature check");
            return Verdict::Delete;
        }
    } else {
        match serde_json::from_str(&message.body) {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(message_id = %clip(&delivery.message_id), %error, "deleting an unreadable reply");
                return Verdict::Delete;
            }
        }
    };
    let Some(id) = reply.id.as_ref().filter(|_| reply.method.is_none()) else {
        // A notification (progress, a log message): not kept.
        return Verdict::Delete;
    };
    let request_id = wire::request_id_text(id);
    let Some(key) = key_of(&request_id) else {
        tracing::debug!(request_id = %clip(&request_id), "deleting a reply to no batch call");
        return Verdict::Delete;
    };
    if !shared.answered(&request_id) {
        tracing::debug!(request_id = %clip(&request_id), "deleting an answer to no pending call (a duplicate, or one already kept)");
        return Verdict::Delete;
    }
    let (outcome, raw) = match (reply.error, reply.result) {
        (Some(error), _) => (
            Err(
                serde_json::from_value::<ErrorData>(error.clone()).unwrap_or_else(|_| {
                    ErrorData::internal_error("the server answered with an unreadable error", None)
                }),
            ),
            error,
        ),
        (None, Some(result)) => (
            serde_json::from_value::<CallToolResult>(result.clone()).map_err(|_| {
                ErrorData::internal_error(
                    "the server answered tools/call with something other than a tool result",
                    None,
                )
            }),
            result,
        ),
        (None, None) => (
            Err(ErrorData::internal_error(
                "the server answered with neither a result nor an error",
                None,
            )),
            Value::Null,
        ),
    };
    tracing::debug!(request_id = %clip(&request_id), method = "tools/call", client_id = %clip(&shared.client_id), "batch answer received");
    Verdict::Answer(Box::new(Answer {
        key: key.to_owned(),
        outcome,
        raw,
        receipt: delivery.receipt.clone(),
    }))
}

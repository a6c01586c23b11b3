//! Drains the reply queue into the transport's `receive()`.
//!
//! A reply queue may be shared by several clients. A message stamped with
//! another client's `ClientId`, or another session's `SessionId`, is not ours:
//! it is released (visible again at once) for its owner rather than deleted,
//! and a poller that received nothing but others' messages pauses briefly
//! (10 ms, doubling up to 500 ms) so the owners get them.
//! Ours are handed to rmcp and then deleted; deletes go out together so the
//! batching outbox can coalesce them.
//!
//! A message of another client that has been received
//! [`orphan_after`](super::QueueClientConfig::orphan_after) times is taken
//! for an orphan (its client is gone) and deleted, with a warning: without
//! that, every client on the queue would receive and release it until the
//! queue's retention ends. The receive count is the broker's, which no
//! sender can forge.
//!
//! On close or drop, a poll in progress is let finish and what it returns is
//! released, so that messages of other clients sharing the queue are not
//! hidden for a visibility timeout by an abandoned call. Closing also waits
//! (a little) for the deletes of messages already handled.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use rmcp::model::ServerJsonRpcMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::order::Received;
use crate::queue::backoff::Backoff;
use crate::queue::{Delivery, Inbox, MAX_RECEIVE_BATCH};
use crate::wire;

/// The pause after a receive that brought only other clients' messages:
/// 10 ms, doubling up to 500 ms.
const STEP_ASIDE: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));

/// How much of an id (attacker-controlled text) a log line shows.
const LOGGED_ID_CHARS: usize = 64;

/// What a poller needs besides its inbox and channel.
pub(super) struct PollSettings {
    /// The long-poll wait.
    pub(super) wait: Duration,
    /// Receives after which another client's message is an orphan.
    pub(super) orphan_after: u32,
    /// Where the deletes of handled messages run, so that closing can wait
    /// for them: before a reply queue is deleted, or before the process
    /// exits and a reply left undeleted would be delivered again.
    pub(super) acks: TaskTracker,
}

pub(super) async fn run(
    inbox: Arc<dyn Inbox>,
    shared: Arc<Shared>,
    sender: mpsc::Sender<Received>,
    settings: PollSettings,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::after_errors();
    let mut step_aside = STEP_ASIDE;
    // At least one delivery, or every message of another client would be
    // deleted on sight.
    let orphan_after = settings.orphan_after.max(1);
    while !stop.is_cancelled() {
        // Never cancelled half-way: a receive abandoned in flight may have
        // taken messages (on SQS the call completes without us), which would
        // then stay hidden from their owners for the visibility timeout.
        let received = inbox.receive(MAX_RECEIVE_BATCH, settings.wait).await;
        if stop.is_cancelled() {
            release_all(&*inbox, received.unwrap_or_default()).await;
            return;
        }
        let deliveries = match received {
            Ok(deliveries) => {
                backoff.reset();
                deliveries
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff.pause(), "reply queue receive failed");
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        let received = deliveries.len();
        let mut others = 0;
        let mut done = Vec::with_capacity(deliveries.len());
        let mut deliveries = deliveries.into_iter();
        let mut gone = false;
        while let Some(delivery) = deliveries.next() {
            match accept(&shared, &delivery) {
                Accept::Ours(message) => {
                    if sender.send(*message).await.is_err() {
                        // The transport is gone: give this message and the
                        // rest of the batch back at once rather than leave
                        // them hidden (some may be other clients').
                        release_all(
                            &*inbox,
                            std::iter::once(delivery).chain(deliveries.by_ref()),
                        )
                        .await;
                        gone = true;
                        break;
                    }
                    done.push(delivery);
                }
                Accept::NotOurs { owner } if delivery.receive_count >= orphan_after => {
                    others += 1;
                    tracing::warn!(
                        message_id = %clip(&delivery.message_id),
                        owner = %clip(&owner),
                        receive_count = delivery.receive_count,
                        orphan_after,
                        "deleting an orphan reply: received this often, its client is taken to be gone"
                    );
                    done.push(delivery);
                }
                Accept::NotOurs { .. } => {
                    others += 1;
                    if let Err(error) = inbox.release(&delivery.receipt).await {
                        tracing::debug!(%error, "could not release another client's message");
                    }
                }
                Accept::Garbage => done.push(delivery),
            }
        }
        // An empty poll has nothing to delete: no task for it.
        if !done.is_empty() {
            let inbox = inbox.clone();
            settings.acks.spawn(async move {
                let acks = done.iter().map(|delivery| inbox.ack(&delivery.receipt));
                for result in join_all(acks).await {
                    if let Err(error) = result {
                        tracing::warn!(%error, "could not delete a reply; it may be delivered again");
                    }
                }
            });
        }
        if gone {
            return;
        }
        if received > 0 && others == received {
            // Everything was another client's: step aside before polling
            // again, or this poller would take the same messages straight
            // back and starve their owners.
            if !step_aside.wait(&stop).await {
                return;
            }
        } else {
            step_aside.reset();
        }
    }
}

/// Makes `deliveries` visible again at once.
async fn release_all(inbox: &dyn Inbox, deliveries: impl IntoIterator<Item = Delivery>) {
    let deliveries: Vec<Delivery> = deliveries.into_iter().collect();
    let releases = deliveries
        .iter()
        .map(|delivery| inbox.release(&delivery.receipt));
    for result in join_all(releases).await {
        if let Err(error) = result {
            tracing::debug!(%error, "could not release a reply on stopping");
        }
    }
}

/// `id` cut to [`LOGGED_ID_CHARS`] characters.
fn clip(id: &str) -> &str {
    id.char_indices()
        .nth(LOGGED_ID_CHARS)
        .map_or(id, |(end, _)| &id[..end])
}

enum Accept {
    Ours(Box<Received>),
    /// Another client's or session's: `owner` is the id it is stamped with.
    NotOurs {
        owner: String,
    },
    Garbage,
}

/// A reply whose offloaded payload was refused (gone, too large, not ours
/// to fetch) fails the call its `RequestId` names with an error saying why,
/// when unsigned replies are trusted anyway: anyone able to send such a
/// reply could send that error outright. With signatures required it
/// cannot be verified without its body, and is dropped like any refused
/// reply (the call then ends by its timeout).
#[cfg(feature = "offload")]
fn payload_refused(
    shared: &Shared,
    refused: &crate::queue::Refused,
    headers: &wire::Headers,
) -> Option<Received> {
    refused.downcast_ref::<crate::queue::layer::PayloadRefused>()?;
    if !shared.unsigned_trusted {
        return None;
    }
    let request_id = headers.request_id.clone()?;
    let id = wire::request_id_from_text(&request_id);
    tracing::warn!(request_id = %request_id, reason = %refused, "failing a call: its reply's payload was refused");
    let error = rmcp::model::ErrorData::new(
        rmcp::model::ErrorCode::INTERNAL_ERROR,
        refused.to_string(),
        None,
    );
    Some(Received {
        message: ServerJsonRpcMessage::error(error, Some(id)),
        request_id: Some(request_id),
        sequence: headers.sequence,
    })
}

fn accept(shared: &Shared, delivery: &Delivery) -> Accept {
    // Out of any SNS envelope already (the inbox's layer).
    let message = &delivery.message;
    let decoded = wire::decode_with::<ServerJsonRpcMessage>(
        message,
        |body| serde_json::from_str(body).ok(),
        // A client has no use for a reply address in `initialize` parameters.
        |_, _| false,
    );
    if let Some(theirs) = decoded.headers.client_id.as_deref()
        && theirs != shared.client_id
    {
        return Accept::NotOurs {
            owner: theirs.to_owned(),
        };
    }
    let mut session = shared
        .session_id
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let (Some(ours), Some(theirs)) = (session.as_deref(), decoded.headers.session_id.as_deref())
        && ours != theirs
    {
        return Accept::NotOurs {
            owner: theirs.to_owned(),
        };
    }
    // Checked once the reply is known to be ours: another client's (signed
    // with another key, say) is released for its owner, not dropped.
    if let Some(refused) = &delivery.refused {
        #[cfg(feature = "offload")]
        if let Some(failed) = payload_refused(shared, refused, &decoded.headers) {
            return Accept::Ours(Box::new(failed));
        }
        tracing::warn!(message_id = %delivery.message_id, reason = %refused, "dropping a refused reply");
        return Accept::Garbage;
    }
    let message = match decoded.message {
        Ok(inbound) => inbound.message,
        Err(error) => {
            tracing::warn!(message_id = %delivery.message_id, %error, "dropping an unreadable reply");
            return Accept::Garbage;
        }
    };
    // The initialize response carries the session id the server issued; later
    // requests present it.
    if session.is_none()
        && let ServerJsonRpcMessage::Response(response) = &message
        && matches!(
            response.result,
            rmcp::model::ServerResult::InitializeResult(_)
        )
    {
        *session = decoded.headers.session_id;
    }
    Accept::Ours(Box::new(Received {
        message,
        request_id: decoded.headers.request_id,
        sequence: decoded.headers.sequence,
    }))
}

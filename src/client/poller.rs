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
//! On close, a poll in progress is let finish and what it returns is
//! released, so that messages of other clients sharing the queue are not
//! hidden for a visibility timeout by an abandoned call.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use rmcp::model::ServerJsonRpcMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::order::Received;
use crate::queue::backoff::Backoff;
use crate::queue::{Delivery, Inbox, MAX_RECEIVE_BATCH};
use crate::wire;

/// The pause after a receive that brought only other clients' messages:
/// 10 ms, doubling up to 500 ms.
const STEP_ASIDE: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));

pub(super) async fn run(
    inbox: Arc<dyn Inbox>,
    shared: Arc<Shared>,
    sender: mpsc::Sender<Received>,
    wait: Duration,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::after_errors();
    let mut step_aside = STEP_ASIDE;
    loop {
        let received = inbox.receive(MAX_RECEIVE_BATCH, wait).await;
        if stop.is_cancelled() {
            for delivery in received.unwrap_or_default() {
                let _ = inbox.release(&delivery.receipt).await;
            }
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
        let mut released = 0;
        let mut done = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match accept(&shared, &delivery) {
                Accept::Ours(message) => {
                    if sender.send(*message).await.is_err() {
                        // The transport is gone; leave the message for
                        // redelivery rather than lose it.
                        return;
                    }
                    done.push(delivery);
                }
                Accept::NotOurs => {
                    released += 1;
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
            tokio::spawn(async move {
                let acks = done.iter().map(|delivery| inbox.ack(&delivery.receipt));
                for result in join_all(acks).await {
                    if let Err(error) = result {
                        tracing::warn!(%error, "could not delete a reply; it may be delivered again");
                    }
                }
            });
        }
        if received > 0 && released == received {
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

enum Accept {
    Ours(Box<Received>),
    NotOurs,
    Garbage,
}

fn accept(shared: &Shared, delivery: &Delivery) -> Accept {
    let decoded = wire::decode_with::<ServerJsonRpcMessage>(
        &delivery.message,
        |body| serde_json::from_str(body).ok(),
        // A client has no use for a reply address in `initialize` parameters.
        |_, _| false,
    );
    if decoded
        .headers
        .client_id
        .as_deref()
        .is_some_and(|id| id != shared.client_id)
    {
        return Accept::NotOurs;
    }
    let mut session = shared
        .session_id
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let (Some(ours), Some(theirs)) = (session.as_deref(), decoded.headers.session_id.as_deref())
        && ours != theirs
    {
        return Accept::NotOurs;
    }
    // Checked once the reply is known to be ours: another client's, signed
    // with another key, is released for its owner, not dropped.
    if let Some(signing) = &shared.signing {
        let unwrapped = wire::envelope::unwrap(&delivery.message);
        let message = unwrapped.as_ref().unwrap_or(&delivery.message);
        if let Err(error) = signing.check(message) {
            tracing::warn!(message_id = %delivery.message_id, %error, "dropping a reply whose signature is refused");
            return Accept::Garbage;
        }
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

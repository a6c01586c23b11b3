//! The server's own dead-lettering (see [`DeadLetter`](super::DeadLetter)):
//! a request that can never be served is sent to the dead-letter address
//! with the reason, removed from the request queue, and its caller told.
//!
//! A move that can never succeed must not loop: the request would come
//! back, be over the count again, fail again, for ever. So the copy is made
//! to fit its destination before it is sent:
//!
//! * **Attributes.** A queue takes at most [`MAX_ATTRIBUTES`]; SNS drops a
//!   message with more on its way to a raw-delivery queue. The server adds
//!   `DeadLetterReason`, `ReceiveCount` and (when it signs) `Signature`; a
//!   request with too many attributes of its own loses its least important
//!   ones (see [`importance`]), and the reason names them.
//! * **FIFO ids.** A request received from a FIFO queue carries a message
//!   group and deduplication id, which a standard queue refuses: they are
//!   dropped, and a FIFO destination gets its own.
//! * **Size.** A copy larger than the destination accepts
//!   ([`Outbox::max_message_size`](crate::queue::Outbox::max_message_size))
//!   is not sent.
//!
//! When the move fails for good (too large, a destination that does not
//! exist, [`QueueError::is_permanent`]), the request is removed with an
//! error log naming the reason, and its caller told. When it fails for a
//! passing reason, the request is left for redelivery, soon (see
//! [`retry_backoff`](super::replay::retry_backoff)).
//!
//! The caller's notice follows the late-ack rule of every answer: it is kept
//! in the replay cache before it is sent, and a notice that fails for a
//! passing reason leaves the request for redelivery, which the replay cache
//! answers with it (before the dead-letter count is checked, so the request
//! is not moved twice; with replay off, it would be).

use rmcp::model::{ErrorCode, RequestId};

use super::clip::clip;
use super::dispatch::{Shared, reply_headers};
use super::inflight::RequestKey;
use super::{DeadLetter, ServiceFactory};
use crate::queue::{AttributeValue, Delivery, MAX_ATTRIBUTES, QueueError, QueueMessage};
use crate::wire::{self, Headers};

/// The request being dead-lettered, and where its caller is told.
pub(super) struct Request<'a> {
    pub(super) delivery: &'a Delivery,
    pub(super) key: &'a RequestKey,
    pub(super) id: &'a RequestId,
    pub(super) reply_to: &'a str,
    pub(super) headers: &'a Headers,
}

impl<F: ServiceFactory> Shared<F> {
    /// Moves `request` to the dead-letter address with `reason` and settles
    /// it; see the [module docs](self).
    pub(super) async fn dead_letter(&self, request: Request<'_>, reason: &str) {
        let Some(dead_letter) = &self.config.dead_letter else {
            return;
        };
        let delivery = request.delivery;
        let message = prepare(
            &delivery.message,
            reason,
            delivery.receive_count,
            dead_letter,
            self.config.signing.is_some(),
        );
        let sent = match self.outbox.max_message_size(&dead_letter.address).await {
            Ok(limit) if message.wire_size() > limit => Err(QueueError::TooLarge {
                size: message.wire_size(),
                limit,
            }),
            Err(error) if error.is_permanent() => Err(error),
            // Not known for now: the send itself checks it.
            Ok(_) | Err(_) => self.outbox.send(&dead_letter.address, message).await,
        };
        match sent {
            Ok(()) => {
                tracing::warn!(message_id = %delivery.message_id, receive_count = delivery.receive_count, %reason, "request dead-lettered");
                let text = format!("Request dead-lettered: {reason}");
                self.tell(request, &text).await;
            }
            Err(error) if error.is_permanent() => {
                tracing::error!(message_id = %delivery.message_id, receive_count = delivery.receive_count, %error, %reason, "the request can never be dead-lettered; removed");
                let text =
                    format!("Request removed: it could not be dead-lettered ({error}): {reason}");
                self.tell(request, &text).await;
            }
            Err(error) => {
                tracing::error!(message_id = %delivery.message_id, %error, %reason, "could not dead-letter the request; left for redelivery");
                self.retry_soon(delivery).await;
            }
        }
    }

    /// Tells the caller of `request` that it will get no result (a `-32603`
    /// error with `text`), then settles it as any answer.
    async fn tell(&self, request: Request<'_>, text: &str) {
        let error = wire::error_reply(Some(request.id), ErrorCode::INTERNAL_ERROR, text);
        let now = tokio::time::Instant::now();
        // Kept first, so that a redelivery is answered with it instead of
        // being moved again. A response kept already (one that could not
        // be sent) is the better answer, and stays.
        if self.replay.get(request.key, now).is_none() {
            self.replay
                .keep(request.key.clone(), error.to_string(), now);
        }
        // Whichever is kept, a replay of it that fails must not move the
        // request a second time.
        self.replay.mark_dead_lettered(request.key);
        let mut reply = self
            .reply(request.reply_to.to_owned(), reply_headers(request.headers))
            .numbered(request.key.caller.request_id.clone());
        let sent = reply.send_value(&error).await;
        self.settle_answered(request.delivery, sent).await;
    }
}

/// The copy of `original` (out of any SNS envelope, as the inbox delivers
/// it) sent to `dead_letter`: with the reason and receive count, within
/// [`MAX_ATTRIBUTES`] and room for the signature the outbox adds when the
/// server `signs` (it vouches for the reason attributes; a signed copy keeps
/// the request's `Timestamp`, or is stamped now), with FIFO ids only
/// for a FIFO destination.
pub(super) fn prepare(
    original: &QueueMessage,
    reason: &str,
    receive_count: u32,
    dead_letter: &DeadLetter,
    signs: bool,
) -> QueueMessage {
    let mut message = original.clone();
    // Whatever the request claims under these names is replaced: the
    // server's are added below. Its signature no longer covers the copy.
    for name in [
        wire::attr::DEAD_LETTER_REASON,
        wire::attr::RECEIVE_COUNT,
        wire::attr::SIGNATURE,
    ] {
        message.attributes.remove(name);
    }
    // A signed message carries a `Timestamp` (the signer stamps one that
    // has none): set aside, never dropped, and counted with ours.
    let timestamp = signs.then(|| {
        message
            .attributes
            .remove(wire::attr::TIMESTAMP)
            .unwrap_or_else(|| AttributeValue::Number(wire::now_text()))
    });
    let ours = 2 + 2 * usize::from(signs);
    let room = MAX_ATTRIBUTES - ours;
    let mut reason = reason.to_owned();
    if message.attributes.len() > room {
        let mut names: Vec<String> = message.attributes.keys().cloned().collect();
        names.sort_by(|a, b| importance(a).cmp(&importance(b)));
        let dropped = names.split_off(room);
        for name in &dropped {
            message.attributes.remove(name);
        }
        let shown: Vec<String> = dropped.iter().map(|name| clip(name).to_string()).collect();
        reason.push_str(&format!(
            " ({} attributes of the request dropped to stay within {MAX_ATTRIBUTES}: {})",
            dropped.len(),
            shown.join(", ")
        ));
    }
    if let Some(timestamp) = timestamp {
        message
            .attributes
            .insert(wire::attr::TIMESTAMP.to_owned(), timestamp);
    }
    message.attributes.insert(
        wire::attr::DEAD_LETTER_REASON.to_owned(),
        AttributeValue::String(reason),
    );
    message.attributes.insert(
        wire::attr::RECEIVE_COUNT.to_owned(),
        AttributeValue::Number(receive_count.to_string()),
    );
    // The request's own FIFO ids (from a FIFO request queue) would be
    // refused by a standard queue; a FIFO one gets fresh ids.
    message.group_id = None;
    message.deduplication_id = None;
    message.for_destination(&dead_letter.address, "asyncmcp-dead-letters")
}

/// Orders a request's attributes most important first, for [`prepare`]:
/// those that say who asked and where to answer (what a redrive needs),
/// then the rest of asyncmcp's, then any others by name.
fn importance(name: &str) -> (usize, &str) {
    const KEPT_FIRST: [&str; 8] = [
        wire::attr::REPLY_TO,
        wire::attr::CLIENT_ID,
        wire::attr::SESSION_ID,
        wire::attr::REQUEST_ID,
        wire::attr::METHOD,
        wire::attr::MESSAGE_TYPE,
        wire::attr::TIMESTAMP,
        wire::attr::SEQUENCE,
    ];
    let rank = KEPT_FIRST
        .iter()
        .position(|kept| *kept == name)
        .unwrap_or(KEPT_FIRST.len());
    (rank, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(address: &str) -> DeadLetter {
        DeadLetter {
            address: address.to_owned(),
            max_receive_count: 1,
        }
    }

    fn request_with(extra: usize) -> QueueMessage {
        let mut message = QueueMessage::new(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .with_string(wire::attr::REPLY_TO, "memory://replies")
            .with_string(wire::attr::CLIENT_ID, "client")
            .with_string(wire::attr::METHOD, "ping");
        for i in 0..extra {
            message = message.with_string(&format!("Extra{i}"), "x");
        }
        message
    }

    #[test]
    fn a_request_with_room_keeps_every_attribute() {
        let moved = prepare(
            &request_with(2),
            "why",
            3,
            &dead_letter("memory://dl"),
            false,
        );
        assert_eq!(moved.attributes.len(), 7);
        assert_eq!(moved.attribute(wire::attr::DEAD_LETTER_REASON), Some("why"));
        assert_eq!(moved.attribute(wire::attr::RECEIVE_COUNT), Some("3"));
    }

    #[test]
    fn the_least_important_attributes_make_room_for_the_reason() {
        let original = request_with(7);
        assert_eq!(original.attributes.len(), MAX_ATTRIBUTES);
        let moved = prepare(&original, "why", 2, &dead_letter("memory://dl"), false);
        assert_eq!(moved.attributes.len(), MAX_ATTRIBUTES);
        for kept in [
            wire::attr::REPLY_TO,
            wire::attr::CLIENT_ID,
            wire::attr::METHOD,
        ] {
            assert!(moved.attribute(kept).is_some(), "{kept} kept");
        }
        // The last by name go first, and the reason says which.
        assert!(moved.attribute("Extra6").is_none() && moved.attribute("Extra5").is_none());
        assert!(moved.attribute("Extra4").is_some());
        let reason = moved
            .attribute(wire::attr::DEAD_LETTER_REASON)
            .unwrap_or_default();
        assert!(reason.starts_with("why (2 attributes"), "{reason}");
        assert!(reason.contains("Extra5, Extra6"), "{reason}");

        // Signing takes one more place; forged reason attributes take none.
        let keys = crate::wire::signing::SigningKeys::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            None,
        )
        .expect("a 32-byte key");
        let forged = original
            .clone()
            .with_string(wire::attr::DEAD_LETTER_REASON, "forged");
        let mut moved = prepare(&forged, "why", 2, &dead_letter("memory://dl"), true);
        assert_eq!(moved.attributes.len(), MAX_ATTRIBUTES - 1);
        assert!(moved.attribute(wire::attr::TIMESTAMP).is_some(), "stamped");
        keys.sign(&mut moved);
        assert_eq!(moved.attributes.len(), MAX_ATTRIBUTES);
        assert!(moved.attribute(wire::attr::SIGNATURE).is_some());
        assert!(moved.attribute("Extra4").is_none());
        assert!(
            moved
                .attribute(wire::attr::DEAD_LETTER_REASON)
                .is_some_and(|r| r.starts_with("why"))
        );
    }

    #[test]
    fn fifo_ids_go_only_to_a_fifo_destination() {
        let mut original = request_with(0);
        original.group_id = Some("their-group".to_owned());
        original.deduplication_id = Some("their-dedup".to_owned());
        let moved = prepare(&original, "why", 2, &dead_letter("https://sqs/1/dl"), false);
        assert_eq!((moved.group_id, moved.deduplication_id), (None, None));
        let moved = prepare(
            &original,
            "why",
            2,
            &dead_letter("https://sqs/1/dl.fifo"),
            false,
        );
        assert_eq!(moved.group_id.as_deref(), Some("asyncmcp-dead-letters"));
        assert!(moved.deduplication_id.is_some_and(|id| id != "their-dedup"));
    }

    #[test]
    fn long_attribute_names_are_clipped_in_the_reason() {
        let mut original = request_with(7);
        original = original.with_string(&"Z".repeat(300), "x");
        let moved = prepare(&original, "why", 2, &dead_letter("memory://dl"), false);
        let reason = moved
            .attribute(wire::attr::DEAD_LETTER_REASON)
            .unwrap_or_default();
        assert!(reason.len() < 300, "{reason}");
        assert!(reason.contains('…'), "{reason}");
    }
}

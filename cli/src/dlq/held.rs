//! Reading a queue while holding what was read, and copying a message back.
//!
//! [`Held`] receives with a visibility timeout of its own ([`HOLD`]), so
//! that a message it returned is not returned again while the command
//! works, and makes everything it still holds visible again at once when
//! [released](Held::release_all); a message it deletes is no longer held.
//! If the command dies, what it held shows again after [`HOLD`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use asyncmcp::queue::is_fifo;
use asyncmcp::wire::attr;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};
use sha2::{Digest, Sha256};

use crate::safe;

/// How long a message this command received stays hidden from others.
pub(crate) const HOLD: Duration = Duration::from_secs(60);

/// How long one receive waits. The queue is read until a receive returns
/// nothing new, so it is short; waiting at all makes SQS ask all of its
/// servers (a receive that does not wait samples only some).
const WAIT_SECS: i32 = 1;

/// The attributes a redrive leaves out: what the server added when it
/// dead-lettered the request, and the signature, which no longer matches
/// once they are gone (and was the server's, not the caller's).
const DROPPED: [&str; 3] = [
    attr::DEAD_LETTER_REASON,
    attr::RECEIVE_COUNT,
    attr::SIGNATURE,
];

/// A queue read by this command, and the receipts of what it holds.
pub(crate) struct Held {
    client: aws_sdk_sqs::Client,
    url: String,
    receipts: Vec<String>,
}

impl Held {
    pub(crate) fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
            receipts: Vec::new(),
        }
    }

    /// Receives up to `max` (at most 10) messages with all their
    /// attributes, and holds them.
    pub(crate) async fn receive(&mut self, max: usize) -> anyhow::Result<Vec<Message>> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(WAIT_SECS)
            .visibility_timeout(i32::try_from(HOLD.as_secs()).unwrap_or(60))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .with_context(|| format!("receiving from {}", self.url))?;
        let messages = output.messages.unwrap_or_default();
        self.receipts.extend(
            messages
                .iter()
                .filter_map(|message| message.receipt_handle.clone()),
        );
        Ok(messages)
    }

    /// Deletes `message` from the queue; it is no longer held.
    pub(crate) async fn delete(&mut self, message: &Message) -> anyhow::Result<()> {
        let receipt = message.receipt_handle.as_deref().unwrap_or_default();
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .with_context(|| format!("deleting from {}", self.url))?;
        self.receipts.retain(|held| held != receipt);
        Ok(())
    }

    /// Makes every message still held visible again at once. A failure is
    /// only logged: the messages show again after [`HOLD`] anyway.
    pub(crate) async fn release_all(self) {
        for chunk in self.receipts.chunks(10) {
            let entries = chunk.iter().enumerate().filter_map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            });
            let released = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await;
            let failed = match released {
                Ok(output) => output.failed.len(),
                Err(error) => {
                    tracing::debug!(error = %DisplayErrorContext(&error), "release failed");
                    chunk.len()
                }
            };
            if failed > 0 {
                tracing::warn!(
                    queue = %safe::escaped(&self.url),
                    "{failed} message(s) could not be made visible again; they will be in {} s",
                    HOLD.as_secs()
                );
            }
        }
    }
}

/// Sends a copy of `message` to the queue at `to`: its body and every
/// attribute (of any data type) but the [`DROPPED`] ones. A FIFO queue gets
/// a message group of its own for each copy (these requests are not
/// ordered) and a deduplication id made from the dead-letter queue's message
/// id, so that a redrive run again within SQS's 5 minutes after a failed
/// delete does not send the same message twice.
pub(crate) async fn send_copy(
    client: &aws_sdk_sqs::Client,
    to: &str,
    message: &Message,
) -> anyhow::Result<()> {
    let mut request = client
        .send_message()
        .queue_url(to)
        .message_body(message.body.as_deref().unwrap_or_default());
    for (name, value) in message.message_attributes.iter().flatten() {
        if !DROPPED.contains(&name.as_str()) {
            request = request.message_attributes(name, value.clone());
        }
    }
    if is_fifo(to) {
        let id = format!("redrive-{}", fifo_id(message));
        request = request.message_group_id(&id).message_deduplication_id(&id);
    }
    request
        .send()
        .await
        .with_context(|| format!("sending to {to}"))?;
    Ok(())
}

/// The message id when it is usable as (part of) a FIFO group or
/// deduplication id (at most 128 characters of alphanumerics and
/// punctuation), else its SHA-256 in hex.
fn fifo_id(message: &Message) -> String {
    let id = message.message_id.as_deref().unwrap_or_default();
    if !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_graphic()) {
        id.to_owned()
    } else {
        hex(&Sha256::digest(id.as_bytes()))
    }
}

/// The SHA-256 of what a redrive sends of `message`: the body and the
/// attributes it keeps. Two messages with the same digest are the same
/// request (a duplicate dead-letter copy, or one sent back that failed
/// again).
pub(crate) fn digest(message: &Message) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        // Length-prefixed, so that no two different messages run together
        // into the same bytes.
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    field(message.body.as_deref().unwrap_or_default().as_bytes());
    let kept: BTreeMap<_, _> = message
        .message_attributes
        .iter()
        .flatten()
        .filter(|(name, _)| !DROPPED.contains(&name.as_str()))
        .collect();
    for (name, value) in kept {
        field(name.as_bytes());
        field(value.data_type.as_bytes());
        field(value.string_value.as_deref().unwrap_or_default().as_bytes());
        field(value.binary_value.as_ref().map_or(&[][..], |b| b.as_ref()));
    }
    hash.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::MessageAttributeValue;

    fn string(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("an attribute")
    }

    #[test]
    fn the_digest_ignores_what_the_server_added_and_nothing_else() {
        let request = Message::builder()
            .body("{}")
            .message_attributes(attr::CLIENT_ID, string("c"));
        let first = request
            .clone()
            .message_attributes(attr::DEAD_LETTER_REASON, string("once"))
            .message_id("1")
            .build();
        let again = request
            .clone()
            .message_attributes(attr::DEAD_LETTER_REASON, string("twice"))
            .message_attributes(attr::SIGNATURE, string("v1.x"))
            .message_id("2")
            .build();
        assert_eq!(digest(&first), digest(&again));
        let other_caller = Message::builder()
            .body("{}")
            .message_attributes(attr::CLIENT_ID, string("d"))
            .build();
        assert_ne!(digest(&first), digest(&other_caller));
        // Name and value boundaries count.
        let a = Message::builder()
            .message_attributes("ab", string("c"))
            .build();
        let b = Message::builder()
            .message_attributes("a", string("bc"))
            .build();
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn fifo_ids_are_always_valid() {
        let plain = Message::builder().message_id("4f1e-9a").build();
        assert_eq!(fifo_id(&plain), "4f1e-9a");
        for odd in ["", "with space", &"x".repeat(500), "é"] {
            let id = fifo_id(&Message::builder().message_id(odd).build());
            assert_eq!(id.len(), 64, "{odd:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}

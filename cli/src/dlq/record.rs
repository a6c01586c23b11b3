//! What a dead-lettered message says about itself, read without trusting
//! it.
//!
//! A copy dead-lettered by an asyncmcp server carries `DeadLetterReason`
//! and `ReceiveCount` (docs/wire.md); one SQS moved by a redrive policy
//! carries neither. The method, request id and caller come from the
//! request's own attributes (`Method`, `RequestId`, `ClientId`, `ReplyTo`),
//! else from its JSON-RPC body. Every value may be missing, malformed or
//! hostile: missing ones are `None`, nothing here fails, and printing goes
//! through [`safe`](crate::safe).

use std::collections::HashMap;
use std::io::Write;

use asyncmcp::wire::attr;
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use serde::Serialize;

use crate::safe;

/// The most characters of a value a listing shows; the reason gets more,
/// as the server's names the attributes it had to drop.
const SHOWN_CHARS: usize = 120;
const SHOWN_REASON_CHARS: usize = 240;

/// One dead-lettered message, as `dlq show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Record {
    /// The dead-letter queue's id of the message.
    pub(crate) message_id: String,
    /// Why the server gave up (`DeadLetterReason`).
    pub(crate) reason: Option<String>,
    /// Deliveries before it gave up (`ReceiveCount`).
    pub(crate) receive_count: Option<u64>,
    /// The JSON-RPC method.
    pub(crate) method: Option<String>,
    /// The JSON-RPC id, as text.
    pub(crate) request_id: Option<String>,
    /// The caller's client id (`ClientId`).
    pub(crate) client_id: Option<String>,
    /// Where the caller wanted replies (`ReplyTo`).
    pub(crate) reply_to: Option<String>,
}

impl Record {
    /// Reads `message`; never fails.
    pub(crate) fn of(message: &Message) -> Self {
        let empty = HashMap::new();
        let attributes = message.message_attributes.as_ref().unwrap_or(&empty);
        let text = |name: &str| -> Option<String> {
            attributes
                .get(name)
                .and_then(MessageAttributeValue::string_value)
                .map(str::to_owned)
        };
        // Parsed only for what the attributes lack; a body that is not a
        // JSON object (or is nested past serde_json's depth limit) gives
        // nothing.
        let body: Option<serde_json::Value> = message
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str(body).ok());
        let from_body = |key: &str| -> Option<String> {
            match body.as_ref()?.get(key)? {
                serde_json::Value::String(text) => Some(text.clone()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            }
        };
        Self {
            message_id: message.message_id.clone().unwrap_or_default(),
            reason: text(attr::DEAD_LETTER_REASON),
            receive_count: text(attr::RECEIVE_COUNT).and_then(|n| n.trim().parse().ok()),
            method: text(attr::METHOD).or_else(|| from_body("method")),
            request_id: text(attr::REQUEST_ID).or_else(|| from_body("id")),
            client_id: text(attr::CLIENT_ID),
            reply_to: text(attr::REPLY_TO),
        }
    }

    /// Writes this record for people: the message id, then one labelled
    /// line per field, each value escaped and clipped; `-` when missing.
    pub(crate) fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let field = |value: &Option<String>, max: usize| match value {
            Some(value) => safe::shown(value, max),
            None => "-".to_owned(),
        };
        let count = self
            .receive_count
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(out, "{}", safe::shown(&self.message_id, SHOWN_CHARS))?;
        writeln!(
            out,
            "  reason:    {}",
            field(&self.reason, SHOWN_REASON_CHARS)
        )?;
        writeln!(out, "  receives:  {count}")?;
        writeln!(out, "  method:    {}", field(&self.method, SHOWN_CHARS))?;
        writeln!(out, "  id:        {}", field(&self.request_id, SHOWN_CHARS))?;
        writeln!(out, "  client:    {}", field(&self.client_id, SHOWN_CHARS))?;
        writeln!(out, "  reply to:  {}", field(&self.reply_to, SHOWN_CHARS))
    }
}

/// Writes `records` for people, a blank line between two.
pub(crate) fn write_all(records: &[Record], out: &mut impl Write) -> std::io::Result<()> {
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        record.write_to(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("an attribute")
    }

    #[test]
    fn a_dead_letter_copy_is_read_from_its_attributes() {
        let message = Message::builder()
            .message_id("m-1")
            .body(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#)
            .message_attributes(attr::DEAD_LETTER_REASON, string("delivered 3 times"))
            .message_attributes(
                attr::RECEIVE_COUNT,
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value("3")
                    .build()
                    .expect("an attribute"),
            )
            .message_attributes(attr::METHOD, string("tools/call"))
            .message_attributes(attr::CLIENT_ID, string("c-1"))
            .message_attributes(attr::REPLY_TO, string("http://q"))
            .build();
        let record = Record::of(&message);
        assert_eq!(record.reason.as_deref(), Some("delivered 3 times"));
        assert_eq!(record.receive_count, Some(3));
        assert_eq!(
            record.method.as_deref(),
            Some("tools/call"),
            "the attribute wins"
        );
        assert_eq!(record.request_id.as_deref(), Some("7"), "from the body");
        assert_eq!(record.client_id.as_deref(), Some("c-1"));
        assert_eq!(record.reply_to.as_deref(), Some("http://q"));
    }

    #[test]
    fn malformed_messages_give_empty_fields() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for body in [
            None,
            Some(""),
            Some("not json"),
            Some("[1,2]"),
            Some(&deep[..]),
        ] {
            let mut message = Message::builder().set_body(body.map(str::to_owned));
            message = message.message_attributes(attr::RECEIVE_COUNT, string("many"));
            let record = Record::of(&message.build());
            assert_eq!(record.method, None);
            assert_eq!(record.receive_count, None);
            assert_eq!(record.message_id, "");
            let mut out = Vec::new();
            record.write_to(&mut out).expect("written");
            assert!(String::from_utf8_lossy(&out).contains("method:    -"));
        }
    }

    #[test]
    fn hostile_values_are_printed_escaped_and_clipped() {
        let message = Message::builder()
            .message_id("m")
            .message_attributes(
                attr::DEAD_LETTER_REASON,
                string("ok\r\n  method:    forged"),
            )
            .message_attributes(attr::METHOD, string("\u{9b}2J\u{202e}gnp.exe"))
            .message_attributes(attr::CLIENT_ID, string(&"x".repeat(10_000)))
            .build();
        let mut out = Vec::new();
        Record::of(&message).write_to(&mut out).expect("written");
        let out = String::from_utf8(out).expect("UTF-8");
        assert_eq!(out.lines().count(), 7, "one line per field: {out}");
        assert!(!out.contains(['\r', '\u{9b}', '\u{202e}']), "{out}");
        assert!(out.contains(r"ok\r\n  method:    forged"), "{out}");
        assert!(out.lines().all(|line| line.chars().count() < 260), "{out}");
    }
}

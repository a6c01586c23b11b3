//! The SNS envelope.
//!
//! When an SQS queue is subscribed to an SNS topic without raw message
//! delivery, SNS wraps each message in a JSON envelope: the published body is
//! the envelope's `Message` (a string) and the published attributes are its
//! `MessageAttributes` (`{"Name": {"Type": "String", "Value": "…"}}`), while
//! the SQS message itself has no attributes. [`unwrap`] turns such a message
//! back into the one that was published, so everything above sees the same
//! message whatever the subscription's delivery mode.
//!
//! The envelope's signature is not verified: a queue receives SNS messages
//! only from the topics its queue policy allows (see
//! `queue::sqs::allow_topic`), which is what authenticates them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::queue::{AttributeValue, QueueMessage};

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "MessageAttributes", default)]
    attributes: BTreeMap<String, EnvelopeAttribute>,
}

#[derive(Deserialize)]
struct EnvelopeAttribute {
    #[serde(rename = "Type")]
    data_type: String,
    #[serde(rename = "Value")]
    value: String,
}

/// The message an SNS envelope carries, or `None` when `message` is not an
/// SNS notification envelope (a raw delivery, or any other body).
///
/// The envelope's attributes are merged under the SQS message's own: where
/// both name an attribute, the SQS one wins.
pub fn unwrap(message: &QueueMessage) -> Option<QueueMessage> {
    // Cheap test first: a JSON-RPC body reaches the full parse below only if
    // it happens to contain both keys.
    let body = message.body.trim_start();
    if !body.starts_with('{') || !body.contains("\"Type\"") || !body.contains("\"Message\"") {
        return None;
    }
    let envelope: Envelope = serde_json::from_str(body).ok()?;
    if envelope.kind != "Notification" {
        return None;
    }
    let mut attributes: BTreeMap<String, AttributeValue> = envelope
        .attributes
        .into_iter()
        .map(|(name, attribute)| {
            let value = match attribute.data_type.as_str() {
                "Number" => AttributeValue::Number(attribute.value),
                _ => AttributeValue::String(attribute.value),
            };
            (name, value)
        })
        .collect();
    attributes.extend(message.attributes.clone());
    Some(QueueMessage {
        body: envelope.message,
        attributes,
        group_id: message.group_id.clone(),
        deduplication_id: message.deduplication_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enveloped(body: &str) -> QueueMessage {
        QueueMessage::new(
            json!({
                "Type": "Notification",
                "MessageId": "5b5e…",
                "TopicArn": "arn:aws:sns:us-east-1:000000000000:requests",
                "Message": body,
                "Timestamp": "2026-11-22T10:00:00.000Z",
                "SignatureVersion": "1",
                "MessageAttributes": {
                    "Method": {"Type": "String", "Value": "tools/call"},
                    "Timestamp": {"Type": "Number", "Value": "1700000000.5"},
                    "SessionId": {"Type": "String", "Value": "from-envelope"},
                },
            })
            .to_string(),
        )
    }

    #[test]
    fn envelope_gives_back_the_published_message() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
        let unwrapped = unwrap(&enveloped(body)).expect("an envelope");
        assert_eq!(unwrapped.body, body);
        assert_eq!(unwrapped.attribute("Method"), Some("tools/call"));
        assert_eq!(
            unwrapped.attributes.get("Timestamp"),
            Some(&AttributeValue::Number("1700000000.5".to_owned()))
        );
    }

    #[test]
    fn queue_attributes_win_over_envelope_attributes() {
        let message = enveloped("{}").with_string("SessionId", "from-queue");
        let unwrapped = unwrap(&message).expect("an envelope");
        assert_eq!(unwrapped.attribute("SessionId"), Some("from-queue"));
        assert_eq!(unwrapped.attribute("Method"), Some("tools/call"));
    }

    #[test]
    fn other_bodies_are_not_envelopes() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"Type":"a","Message":"b"}}"#,
            r#"{"Type":"SubscriptionConfirmation","Message":"confirm"}"#,
            r#"{"Type":"Notification","Message":42}"#,
            "not json",
            "",
        ] {
            assert!(unwrap(&QueueMessage::new(body)).is_none(), "{body}");
        }
    }
}

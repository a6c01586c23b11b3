//! The codec: JSON-RPC message + [`Headers`] ⇄ [`QueueMessage`].

use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::model::{ErrorCode, RequestId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{attr, envelope};
use crate::queue::{AttributeValue, QueueMessage, is_topic_arn};

/// Routing data that travels beside a message, in its attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `SessionId`: the session (legacy protocol versions).
    pub session_id: Option<String>,
    /// `ClientId`: the client that sent the request.
    pub client_id: Option<String>,
    /// `ReplyTo`: where replies go (client to server).
    pub reply_to: Option<String>,
    /// `RequestId` on a message that is not itself a request: the request a
    /// server's notification or response belongs to. (A request's own id is
    /// taken from its body.)
    pub request_id: Option<String>,
    /// `Sequence`: the message's position among those sent for
    /// [`request_id`](Self::request_id), from 1.
    pub sequence: Option<u64>,
}

/// Why a queue message is not a JSON-RPC message we can serve.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The body is not JSON (JSON-RPC `-32700`).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not a valid JSON-RPC message of the expected kind
    /// (JSON-RPC `-32600`). `id` is the message's id when it could be read.
    #[error("not a valid JSON-RPC message: {reason}")]
    NotJsonRpc {
        /// The request id, when the body had a readable one.
        id: Option<RequestId>,
        /// What is wrong, for logs.
        reason: String,
    },
    /// A message could not be serialized.
    #[error("cannot serialize message: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl WireError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::NotJson(_) => ErrorCode::PARSE_ERROR,
            WireError::NotJsonRpc { .. } => ErrorCode::INVALID_REQUEST,
            WireError::Serialize(_) => ErrorCode::INTERNAL_ERROR,
        }
    }

    /// The request id this error can be answered with, if any.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            WireError::NotJsonRpc { id, .. } => id.as_ref(),
            _ => None,
        }
    }
}

/// A decoded queue message.
#[derive(Debug)]
pub struct Decoded<M> {
    /// Routing data read from the attributes (present even when the body is bad).
    pub headers: Headers,
    /// The message, or why the body is not one.
    pub message: Result<M, WireError>,
}

/// A decoded message with the parts of its body the transport needs before
/// the typed message is handed to rmcp.
#[derive(Debug)]
pub struct Inbound<M> {
    /// The typed JSON-RPC message.
    pub message: M,
    /// The reply address an `initialize` request names in its parameters
    /// (`params.response_queue_url` or `params._meta.responseQueueUrl`).
    pub init_reply_to: Option<String>,
}

/// The text form of a request id, as carried in the `RequestId` attribute.
pub fn request_id_text(id: &RequestId) -> String {
    match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::String(s) => s.to_string(),
    }
}

/// Encodes one JSON-RPC message for a queue.
///
/// `RequestId` and `Method` are derived from the message itself; the rest of
/// the attributes come from `headers`.
pub fn encode<T: Serialize + ?Sized>(
    message: &T,
    headers: &Headers,
) -> Result<QueueMessage, WireError> {
    let value = serde_json::to_value(message)?;
    encode_value(&value, headers)
}

/// Encodes a JSON-RPC message that is already a JSON value.
pub(crate) fn encode_value(value: &Value, headers: &Headers) -> Result<QueueMessage, WireError> {
    let body = serde_json::to_string(value)?;
    let mut message = QueueMessage::new(body).with_string(attr::MESSAGE_TYPE, attr::JSONRPC);
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    message.attributes.insert(
        attr::TIMESTAMP.to_owned(),
        AttributeValue::Number(format!("{seconds:.3}")),
    );
    let mut request_id = None;
    if let Some(method) = value.get("method").and_then(Value::as_str) {
        message = message.with_string(attr::METHOD, method);
        request_id = value
            .get("id")
            .and_then(id_from_value)
            .map(|id| request_id_text(&id));
    }
    if let Some(id) = request_id.or_else(|| headers.request_id.clone()) {
        message = message.with_string(attr::REQUEST_ID, id);
    }
    if let Some(sequence) = headers.sequence {
        message.attributes.insert(
            attr::SEQUENCE.to_owned(),
            AttributeValue::Number(sequence.to_string()),
        );
    }
    for (name, value) in [
        (attr::SESSION_ID, &headers.session_id),
        (attr::CLIENT_ID, &headers.client_id),
        (attr::REPLY_TO, &headers.reply_to),
    ] {
        if let Some(value) = value {
            message = message.with_string(name, value.clone());
        }
    }
    Ok(message)
}

/// Decodes a queue message into a JSON-RPC message of type `M`
/// (`ClientJsonRpcMessage` on a server, `ServerJsonRpcMessage` on a client).
///
/// A message in an [SNS envelope](super::envelope) is unwrapped first.
///
/// Never panics: a bad body is reported in [`Decoded::message`] with the
/// request id when one can be read, so the caller can answer it.
pub fn decode<M: DeserializeOwned>(message: &QueueMessage) -> Decoded<Inbound<M>> {
    let unwrapped = envelope::unwrap(message);
    let message = unwrapped.as_ref().unwrap_or(message);
    let headers = Headers {
        session_id: non_empty(message.attribute(attr::SESSION_ID)),
        client_id: non_empty(message.attribute(attr::CLIENT_ID)),
        reply_to: non_empty(message.attribute(attr::REPLY_TO)),
        request_id: non_empty(message.attribute(attr::REQUEST_ID)),
        sequence: message
            .attribute(attr::SEQUENCE)
            .and_then(|n| n.parse().ok()),
    };
    let value: Value = match serde_json::from_str(&message.body) {
        Ok(value) => value,
        Err(error) => {
            return Decoded {
                headers,
                message: Err(WireError::NotJson(error.to_string())),
            };
        }
    };
    let id = value.get("id").and_then(id_from_value);
    if !value.is_object() || value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Decoded {
            headers,
            message: Err(WireError::NotJsonRpc {
                id,
                reason: "expected one JSON object with \"jsonrpc\": \"2.0\"".to_owned(),
            }),
        };
    }
    let init_reply_to = initialize_reply_to(&value);
    let message = serde_json::from_value::<M>(value)
        .map(|message| Inbound {
            message,
            init_reply_to,
        })
        .map_err(|error| WireError::NotJsonRpc {
            id,
            reason: error.to_string(),
        });
    Decoded { headers, message }
}

/// Builds a JSON-RPC error response. `id` is `null` when the request's id is
/// unknown, as JSON-RPC 2.0 requires.
pub fn error_reply(id: Option<&RequestId>, code: ErrorCode, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code.0, "message": message },
    })
}

fn id_from_value(value: &Value) -> Option<RequestId> {
    match value {
        Value::Number(n) => n.as_i64().map(RequestId::Number),
        Value::String(s) => Some(RequestId::String(s.as_str().into())),
        _ => None,
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The reply address an `initialize` request names, under any of the Python
/// keys: a queue (`response_queue_url`, `_meta.responseQueueUrl`) or an SNS
/// topic (`client_topic_arn`, `_meta.clientTopicArn`).
fn initialize_reply_to(value: &Value) -> Option<String> {
    if value.get("method").and_then(Value::as_str) != Some("initialize") {
        return None;
    }
    let params = value.get("params")?;
    let meta = params.get("_meta");
    [
        params.get(attr::INIT_RESPONSE_QUEUE_URL),
        meta.and_then(|m| m.get(attr::INIT_META_RESPONSE_QUEUE_URL)),
        params.get(attr::INIT_CLIENT_TOPIC_ARN),
        meta.and_then(|m| m.get(attr::INIT_META_CLIENT_TOPIC_ARN)),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_str)
    .find(|s| !s.is_empty())
    .map(str::to_owned)
}

/// Adds the reply address to an `initialize` request under both keys Python
/// asyncmcp servers read (0.2.1 reads one, its main branch the other, and
/// each drops an initialize that has only the other): the queue keys for a
/// queue, the topic keys for an SNS topic.
pub(crate) fn add_initialize_reply_to(value: &mut Value, reply_to: &str) {
    let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) else {
        return;
    };
    let (key, meta_key) = if is_topic_arn(reply_to) {
        (
            attr::INIT_CLIENT_TOPIC_ARN,
            attr::INIT_META_CLIENT_TOPIC_ARN,
        )
    } else {
        (
            attr::INIT_RESPONSE_QUEUE_URL,
            attr::INIT_META_RESPONSE_QUEUE_URL,
        )
    };
    params.insert(key.to_owned(), json!(reply_to));
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(meta_key.to_owned(), json!(reply_to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};

    fn headers() -> Headers {
        Headers {
            session_id: Some("s-1".into()),
            client_id: Some("c-1".into()),
            reply_to: Some("memory://replies".into()),
            request_id: None,
            sequence: None,
        }
    }

    #[test]
    fn request_round_trips_with_attributes() {
        let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}});
        let queued = encode(&body, &headers()).unwrap();
        assert_eq!(queued.attribute(attr::MESSAGE_TYPE), Some("jsonrpc"));
        assert_eq!(queued.attribute(attr::METHOD), Some("tools/list"));
        assert_eq!(queued.attribute(attr::REQUEST_ID), Some("7"));
        assert_eq!(queued.attribute(attr::SESSION_ID), Some("s-1"));
        assert_eq!(queued.attribute(attr::CLIENT_ID), Some("c-1"));
        assert_eq!(queued.attribute(attr::REPLY_TO), Some("memory://replies"));
        assert!(matches!(
            queued.attributes.get(attr::TIMESTAMP),
            Some(AttributeValue::Number(_))
        ));
        let decoded = decode::<ClientJsonRpcMessage>(&queued);
        let expected = Headers {
            request_id: Some("7".into()),
            ..headers()
        };
        assert_eq!(decoded.headers, expected);
        let inbound = decoded.message.unwrap();
        assert!(matches!(inbound.message, ClientJsonRpcMessage::Request(_)));
        assert_eq!(inbound.init_reply_to, None);
    }

    #[test]
    fn responses_carry_no_method_or_request_id() {
        let body = json!({"jsonrpc":"2.0","id":"a","result":{}});
        let queued = encode(&body, &Headers::default()).unwrap();
        assert_eq!(queued.attribute(attr::METHOD), None);
        assert_eq!(queued.attribute(attr::REQUEST_ID), None);
        assert_eq!(queued.attribute(attr::SESSION_ID), None);
    }

    #[test]
    fn string_ids_are_carried_verbatim() {
        let body = json!({"jsonrpc":"2.0","id":"req-9","method":"ping"});
        let queued = encode(&body, &Headers::default()).unwrap();
        assert_eq!(queued.attribute(attr::REQUEST_ID), Some("req-9"));
    }

    #[test]
    fn garbage_is_a_parse_error_with_headers_kept() {
        let mut queued = QueueMessage::new("{not json");
        queued = queued.with_string(attr::REPLY_TO, "memory://r");
        let decoded = decode::<ClientJsonRpcMessage>(&queued);
        assert_eq!(decoded.headers.reply_to.as_deref(), Some("memory://r"));
        let error = decoded.message.unwrap_err();
        assert_eq!(error.code(), ErrorCode::PARSE_ERROR);
        assert!(error.request_id().is_none());
    }

    #[test]
    fn json_that_is_not_jsonrpc_keeps_its_id() {
        for body in [
            r#"{"id":3,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":3}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":42}"#,
        ] {
            let decoded = decode::<ClientJsonRpcMessage>(&QueueMessage::new(body));
            let error = decoded.message.unwrap_err();
            assert_eq!(error.code(), ErrorCode::INVALID_REQUEST, "{body}");
            assert_eq!(error.request_id(), Some(&RequestId::Number(3)), "{body}");
        }
        for body in ["[1,2]", "42", "\"x\"", "null"] {
            let decoded = decode::<ClientJsonRpcMessage>(&QueueMessage::new(body));
            assert_eq!(
                decoded.message.unwrap_err().code(),
                ErrorCode::INVALID_REQUEST
            );
        }
    }

    #[test]
    fn deeply_nested_json_is_rejected_not_a_stack_overflow() {
        let body = "[".repeat(100_000) + &"]".repeat(100_000);
        let decoded = decode::<ClientJsonRpcMessage>(&QueueMessage::new(body));
        assert_eq!(decoded.message.unwrap_err().code(), ErrorCode::PARSE_ERROR);
    }

    #[test]
    fn initialize_reply_address_is_read_from_either_key() {
        let v021 = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"py","version":"1"},
            "response_queue_url":"http://q/a"}});
        let main = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"py","version":"1"},
            "_meta":{"responseQueueUrl":"http://q/b"}}});
        for (body, expected) in [(v021, "http://q/a"), (main, "http://q/b")] {
            let queued = encode(&body, &Headers::default()).unwrap();
            let inbound = decode::<ClientJsonRpcMessage>(&queued).message.unwrap();
            assert_eq!(inbound.init_reply_to.as_deref(), Some(expected));
        }
    }

    #[test]
    fn initialize_carries_reply_address_under_both_keys() {
        let initialize = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}});
        let mut body = initialize.clone();
        add_initialize_reply_to(&mut body, "http://q/r");
        assert_eq!(body["params"]["response_queue_url"], "http://q/r");
        assert_eq!(body["params"]["_meta"]["responseQueueUrl"], "http://q/r");
        assert!(body["params"].get("client_topic_arn").is_none());

        let topic = "arn:aws:sns:us-east-1:000000000000:replies";
        let mut body = initialize;
        add_initialize_reply_to(&mut body, topic);
        assert_eq!(body["params"]["client_topic_arn"], topic);
        assert_eq!(body["params"]["_meta"]["clientTopicArn"], topic);
        assert!(body["params"].get("response_queue_url").is_none());
        let queued = encode(&body, &Headers::default()).unwrap();
        let inbound = decode::<ClientJsonRpcMessage>(&queued).message.unwrap();
        assert_eq!(inbound.init_reply_to.as_deref(), Some(topic));
    }

    #[test]
    fn replies_carry_their_request_and_sequence() {
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress",
            "params":{"progressToken":"t","progress":1}});
        let headers = Headers {
            request_id: Some("7".into()),
            sequence: Some(2),
            ..Headers::default()
        };
        let queued = encode(&progress, &headers).unwrap();
        assert_eq!(queued.attribute(attr::REQUEST_ID), Some("7"));
        assert_eq!(
            queued.attributes.get(attr::SEQUENCE),
            Some(&AttributeValue::Number("2".into()))
        );
        let decoded = decode::<ServerJsonRpcMessage>(&queued);
        assert_eq!(decoded.headers.request_id.as_deref(), Some("7"));
        assert_eq!(decoded.headers.sequence, Some(2));
        // A request's own id wins over the header.
        let request = json!({"jsonrpc":"2.0","id":9,"method":"ping"});
        let queued = encode(&request, &headers).unwrap();
        assert_eq!(queued.attribute(attr::REQUEST_ID), Some("9"));
    }

    #[test]
    fn enveloped_messages_decode_like_raw_ones() {
        let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}});
        let raw = encode(&body, &headers()).unwrap();
        let attributes: serde_json::Map<String, Value> = raw
            .attributes
            .iter()
            .map(|(name, value)| {
                let kind = match value {
                    AttributeValue::String(_) => "String",
                    AttributeValue::Number(_) => "Number",
                };
                (name.clone(), json!({"Type": kind, "Value": value.as_str()}))
            })
            .collect();
        let enveloped = QueueMessage::new(
            json!({"Type": "Notification", "Message": raw.body, "MessageAttributes": attributes})
                .to_string(),
        );
        let from_raw = decode::<ClientJsonRpcMessage>(&raw);
        let from_envelope = decode::<ClientJsonRpcMessage>(&enveloped);
        assert_eq!(from_envelope.headers, from_raw.headers);
        assert!(matches!(
            from_envelope.message.unwrap().message,
            ClientJsonRpcMessage::Request(_)
        ));
    }

    #[test]
    fn error_reply_uses_null_id_when_unknown() {
        let reply = error_reply(None, ErrorCode::PARSE_ERROR, "bad");
        assert_eq!(reply["id"], Value::Null);
        assert_eq!(reply["error"]["code"], -32700);
        let typed: ServerJsonRpcMessage = serde_json::from_value(error_reply(
            Some(&RequestId::Number(4)),
            ErrorCode::INTERNAL_ERROR,
            "x",
        ))
        .unwrap();
        assert!(matches!(typed, ServerJsonRpcMessage::Error(_)));
    }
}

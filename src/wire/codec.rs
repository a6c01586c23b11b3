//! The codec: JSON-RPC message + [`Headers`] ⇄ [`QueueMessage`].

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::model::{ErrorCode, JsonRpcMessage, RequestId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{attr, envelope};
use crate::queue::{AttributeValue, Attributes, QueueMessage, is_topic_arn};

/// Routing data that travels beside a message, in its attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Which attributes the message carries beyond what its receiver reads.
    pub detail: Detail,
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

/// How many attributes a message carries. Each one costs the broker work on
/// every send and receive (BENCHMARKS.md, "What each attribute costs"), so
/// a sender that knows its peer is an asyncmcp one sends only what that peer
/// reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detail {
    /// Every attribute docs/wire.md defines for the message, as Python
    /// asyncmcp sends them: `MessageType`, `Timestamp`, `Method`,
    /// `RequestId`, and the headers given. What a peer that is not known to
    /// be an asyncmcp one gets, and what tooling that filters or indexes on
    /// those attributes (an SNS filter policy on `Method`, say) needs.
    #[default]
    Full,
    /// Only what an asyncmcp receiver reads: the headers given, without
    /// `MessageType`, `Timestamp` (a [signed](super::signing) message gets
    /// one from the signer), `Method`, or a request's own `RequestId`
    /// (its body has both), unless the sender gives it as a header; and on a
    /// final response numbered 1 (nothing before it to wait for) no
    /// `Sequence`.
    Lean,
}

/// Why a queue message is not a JSON-RPC message we can serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Decoded<M> {
    /// Routing data read from the attributes (present even when the body is bad).
    pub headers: Headers,
    /// The message, or why the body is not one.
    pub message: Result<M, WireError>,
}

/// A decoded message with the parts of its body the transport needs before
/// the typed message is handed to rmcp.
#[derive(Debug)]
#[non_exhaustive]
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

/// The request id a `RequestId` attribute names: a number when the text
/// is one (rmcp's ids), else a string. The attribute does not say which
/// the id was, so `"7"` sent as a string id reads back as the number 7.
pub fn request_id_from_text(text: &str) -> RequestId {
    match text.parse::<i64>() {
        Ok(n) => RequestId::Number(n),
        Err(_) => RequestId::String(text.into()),
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
    // Serialized once, straight to text: going through a `Value` first
    // would build and drop a tree of the whole message.
    let body = serde_json::to_string(message)?;
    let (method, id) = method_and_id(&body);
    let attributes = attributes(method.as_deref(), id, headers);
    Ok(queued(body, attributes))
}

/// Encodes a typed JSON-RPC message (what rmcp hands a transport).
///
/// Like [`encode`], but a response or an error, which has no `method`, is
/// not read back for one: the final response is the largest message of a
/// call, and reading it again would cost as much as writing it.
pub(crate) fn encode_message<Req, Resp, Noti>(
    message: &JsonRpcMessage<Req, Resp, Noti>,
    headers: &Headers,
) -> Result<QueueMessage, WireError>
where
    Req: Serialize,
    Resp: Serialize,
    Noti: Serialize,
{
    let body = serde_json::to_string(message)?;
    let (method, id) = match message {
        JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => (None, None),
        JsonRpcMessage::Request(_) | JsonRpcMessage::Notification(_) => method_and_id(&body),
    };
    let attributes = attributes(method.as_deref(), id, headers);
    Ok(queued(body, attributes))
}

/// Encodes a JSON-RPC message that is already a JSON value.
pub(crate) fn encode_value(value: &Value, headers: &Headers) -> Result<QueueMessage, WireError> {
    let body = serde_json::to_string(value)?;
    let method = value.get("method").and_then(Value::as_str);
    let id = method.and(value.get("id")).and_then(id_from_value);
    let attributes = attributes(method, id, headers);
    Ok(queued(body, attributes))
}

/// The `method` of a serialized message and, when it has one, its `id`:
/// what the `Method` and `RequestId` attributes carry.
fn method_and_id(body: &str) -> (Option<Cow<'_, str>>, Option<RequestId>) {
    /// The two members, the method borrowed from the text; every other
    /// member is skipped without being built.
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        method: Option<&'a str>,
        #[serde(default)]
        id: Option<Value>,
    }
    if !body.starts_with('{') {
        // Not an object (a derived struct would also read an array).
        return (None, None);
    }
    match serde_json::from_str::<Probe<'_>>(body) {
        Ok(Probe {
            method: Some(method),
            id,
        }) => (
            Some(Cow::Borrowed(method)),
            id.as_ref().and_then(id_from_value),
        ),
        Ok(Probe { method: None, .. }) => (None, None),
        // A `method` with escapes (it cannot be borrowed), or that is not a
        // string, or a member given twice: read it as a `Value` does (the
        // last of duplicates wins; a method that is not a string is none).
        Err(_) => {
            let Ok(value) = serde_json::from_str::<Value>(body) else {
                return (None, None);
            };
            let Some(method) = value.get("method").and_then(Value::as_str) else {
                return (None, None);
            };
            let id = value.get("id").and_then(id_from_value);
            (Some(Cow::Owned(method.to_owned())), id)
        }
    }
}

/// A queue message of `body` with `attributes` (and no FIFO ids yet).
fn queued(body: String, attributes: Attributes) -> QueueMessage {
    QueueMessage {
        body,
        attributes,
        ..QueueMessage::default()
    }
}

/// The attributes of a message with this `method` and `id`.
fn attributes(method: Option<&str>, id: Option<RequestId>, headers: &Headers) -> Attributes {
    let string = |value: &str| AttributeValue::String(value.to_owned());
    let mut attributes = Attributes::new();
    let full = headers.detail == Detail::Full;
    if full {
        attributes.insert(attr::MESSAGE_TYPE.to_owned(), string(attr::JSONRPC));
        attributes.insert(
            attr::TIMESTAMP.to_owned(),
            AttributeValue::Number(now_text()),
        );
    }
    let mut request_id = None;
    if let Some(method) = method.filter(|_| full) {
        attributes.insert(attr::METHOD.to_owned(), string(method));
        request_id = id.map(|id| request_id_text(&id));
    }
    if let Some(id) = request_id.or_else(|| headers.request_id.clone()) {
        attributes.insert(attr::REQUEST_ID.to_owned(), AttributeValue::String(id));
    }
    // A final response (no method) numbered 1 has nothing to wait for: the
    // client hands it over at once, as it does one without a number. (Its
    // `RequestId` stays: a client fails the call by it when the response's
    // offloaded payload is gone, and the body is then no help.)
    let lone_final = method.is_none() && headers.sequence == Some(1);
    if let Some(sequence) = headers.sequence.filter(|_| full || !lone_final) {
        attributes.insert(
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
            attributes.insert(name.to_owned(), string(value));
        }
    }
    attributes
}

/// The send time as `Timestamp` carries it: epoch seconds with three
/// decimals (milliseconds truncated), written from integers, which is
/// cheaper than formatting an `f64` to a precision.
pub(crate) fn now_text() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
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
    decode_with(
        unwrapped.as_ref().unwrap_or(message),
        |body| serde_json::from_str(body).ok(),
        |_, body| {
            // The method is `initialize` only if its letters are in the
            // text, unless one of them is written as a `\u` escape.
            body.contains("initialize") || body.contains("\\u")
        },
    )
}

/// [`decode`], with the body parsed by `parse` (which gives what
/// `serde_json::from_str` would, or `None`), and told by `may_be_initialize`
/// which messages can be an `initialize` request (whose parameters may name
/// a reply address). The body is parsed once, straight into `M`; it is read
/// as a [`Value`] only when that fails, to say why, or for an `initialize`.
///
/// Unlike [`decode`], it takes `message` as sent, already out of any SNS
/// envelope ([`envelope::unwrap`]): its callers need that message for the
/// signature check too, and unwrap it once for both.
pub(crate) fn decode_with<M: DeserializeOwned>(
    message: &QueueMessage,
    parse: impl FnOnce(&str) -> Option<M>,
    may_be_initialize: impl FnOnce(&M, &str) -> bool,
) -> Decoded<Inbound<M>> {
    let headers = Headers {
        // What the sender chose, as far as it shows: `MessageType` is on
        // every message a full sender sends.
        detail: if message.attribute(attr::MESSAGE_TYPE).is_some() {
            Detail::Full
        } else {
            Detail::Lean
        },
        session_id: non_empty(message.attribute(attr::SESSION_ID)),
        client_id: non_empty(message.attribute(attr::CLIENT_ID)),
        reply_to: non_empty(message.attribute(attr::REPLY_TO)),
        request_id: non_empty(message.attribute(attr::REQUEST_ID)),
        sequence: message
            .attribute(attr::SEQUENCE)
            .and_then(|n| n.parse().ok()),
    };
    let body = message.body.as_str();
    let message = match parse(body) {
        Some(typed) => {
            let init_reply_to = if may_be_initialize(&typed, body) {
                serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|value| initialize_reply_to(&value))
            } else {
                None
            };
            Ok(Inbound {
                message: typed,
                init_reply_to,
            })
        }
        None => decode_value(body),
    };
    Decoded { headers, message }
}

/// Decodes `body` through a [`Value`]: slower than parsing it straight into
/// `M`, but it tells a body that is not JSON from one that is not JSON-RPC,
/// and finds the id to answer with.
fn decode_value<M: DeserializeOwned>(body: &str) -> Result<Inbound<M>, WireError> {
    let value: Value =
        serde_json::from_str(body).map_err(|error| WireError::NotJson(error.to_string()))?;
    let id = value.get("id").and_then(id_from_value);
    if !value.is_object() || value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(WireError::NotJsonRpc {
            id,
            reason: "expected one JSON object with \"jsonrpc\": \"2.0\"".to_owned(),
        });
    }
    let init_reply_to = initialize_reply_to(&value);
    serde_json::from_value::<M>(value)
        .map(|message| Inbound {
            message,
            init_reply_to,
        })
        .map_err(|error| WireError::NotJsonRpc {
            id,
            reason: error.to_string(),
        })
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
/// topic (`client_topic_arn`, `_meta.clientTopicArn`), or a webhook URL
/// (`_meta.webhookUrl`).
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
        meta.and_then(|m| m.get(attr::META_WEBHOOK_URL)),
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
            detail: Detail::Full,
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
    fn a_lean_request_carries_only_its_routing() {
        let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}});
        let lean = Headers {
            detail: Detail::Lean,
            ..headers()
        };
        let queued = encode(&body, &lean).unwrap();
        let mut names: Vec<&str> = queued.attributes.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, [attr::CLIENT_ID, attr::REPLY_TO, attr::SESSION_ID]);
        // The receiver still reads everything it routes by, and the id and
        // method from the body.
        let decoded = decode::<ClientJsonRpcMessage>(&queued);
        assert_eq!(decoded.headers, lean);
        let Ok(Inbound {
            message: ClientJsonRpcMessage::Request(request),
            ..
        }) = decoded.message
        else {
            panic!("a request");
        };
        assert_eq!(request.id, RequestId::Number(7));
    }

    #[test]
    fn a_lean_reply_is_numbered_only_when_something_came_before_it() {
        let numbered = |sequence: u64| Headers {
            detail: Detail::Lean,
            client_id: Some("c-1".into()),
            request_id: Some("7".into()),
            sequence: Some(sequence),
            ..Headers::default()
        };
        let response = json!({"jsonrpc":"2.0","id":7,"result":{}});
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{}});
        // A response with nothing before it: whose it is, and for which call.
        let alone = encode(&response, &numbered(1)).unwrap();
        let mut names: Vec<&str> = alone.attributes.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, [attr::CLIENT_ID, attr::REQUEST_ID]);
        // A notification, and a response after one: both numbered.
        for (message, sequence) in [(&progress, 1), (&response, 2)] {
            let queued = encode(message, &numbered(sequence)).unwrap();
            assert_eq!(queued.attribute(attr::REQUEST_ID), Some("7"));
            assert_eq!(
                queued.attribute(attr::SEQUENCE),
                Some(&*sequence.to_string())
            );
            assert_eq!(queued.attribute(attr::METHOD), None);
            assert_eq!(queued.attributes.len(), 3);
        }
        // Full detail numbers the lone response too, as before.
        let full = Headers {
            detail: Detail::Full,
            ..numbered(1)
        };
        let queued = encode(&response, &full).unwrap();
        assert_eq!(queued.attribute(attr::SEQUENCE), Some("1"));
        assert_eq!(queued.attribute(attr::MESSAGE_TYPE), Some("jsonrpc"));
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
        let webhook = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"py","version":"1"},
            "_meta":{"webhookUrl":"https://hooks.example/mcp"}}});
        for (body, expected) in [
            (v021, "http://q/a"),
            (main, "http://q/b"),
            (webhook, "https://hooks.example/mcp"),
        ] {
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
    fn typed_messages_encode_like_their_values() {
        let messages: Vec<ClientJsonRpcMessage> = [
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
                "params":{"name":"echo","arguments":{"text":"hi"}}}),
            json!({"jsonrpc":"2.0","id":"s-7","method":"ping"}),
            json!({"jsonrpc":"2.0","method":"notifications/cancelled",
                "params":{"requestId":7}}),
            json!({"jsonrpc":"2.0","id":7,"result":{}}),
            json!({"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"no"}}),
        ]
        .into_iter()
        .map(|value| serde_json::from_value(value).unwrap())
        .collect();
        for message in &messages {
            let typed = encode_message(message, &headers()).unwrap();
            let value = encode_value(&serde_json::to_value(message).unwrap(), &headers()).unwrap();
            let body: Value = serde_json::from_str(&typed.body).unwrap();
            assert_eq!(body, serde_json::from_str::<Value>(&value.body).unwrap());
            let without_time = |mut queued: QueueMessage| {
                queued.attributes.remove(attr::TIMESTAMP);
                queued.attributes
            };
            assert_eq!(without_time(typed), without_time(value), "{body}");
        }
    }

    #[test]
    fn method_and_id_are_read_back_however_the_body_is_written() {
        for (body, method, id) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
                Some("ping"),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"p\u0069ng"}"#,
                Some("ping"),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
                Some("b"),
                Some("1"),
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":3}"#, None, None),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                Some("ping"),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Some("notifications/initialized"),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"method":"x"}}"#,
                None,
                None,
            ),
            (r#"["ping",1]"#, None, None),
        ] {
            let (found, found_id) = method_and_id(body);
            assert_eq!(found.as_deref(), method, "{body}");
            assert_eq!(
                found_id.as_ref().map(request_id_text).as_deref(),
                id,
                "{body}"
            );
        }
    }

    #[test]
    fn timestamps_are_epoch_seconds_with_milliseconds() {
        let queued = encode(&json!({"jsonrpc":"2.0","method":"x"}), &Headers::default()).unwrap();
        let Some(AttributeValue::Number(text)) = queued.attributes.get(attr::TIMESTAMP) else {
            panic!("no Timestamp");
        };
        let (seconds, millis) = text.split_once('.').unwrap();
        assert!(seconds.parse::<u64>().unwrap() > 1_700_000_000, "{text}");
        assert!(
            millis.len() == 3 && millis.bytes().all(|b| b.is_ascii_digit()),
            "{text}"
        );
    }

    #[test]
    fn an_initialize_with_an_escaped_method_still_names_its_reply_address() {
        let body = r#"{"jsonrpc":"2.0","id":0,"method":"in\u0069tialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"py","version":"1"},"response_queue_url":"http://q/a"}}"#;
        let inbound = decode::<ClientJsonRpcMessage>(&QueueMessage::new(body))
            .message
            .unwrap();
        assert_eq!(inbound.init_reply_to.as_deref(), Some("http://q/a"));
    }

    #[test]
    fn duplicate_members_decode_as_before() {
        // The last of duplicate members wins, as it does in a `Value`.
        let body = r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#;
        let inbound = decode::<ClientJsonRpcMessage>(&QueueMessage::new(body))
            .message
            .unwrap();
        let ClientJsonRpcMessage::Request(request) = inbound.message else {
            panic!("not a request");
        };
        assert_eq!(request.id, RequestId::Number(2));
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

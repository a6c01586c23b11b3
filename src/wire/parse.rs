//! Reading what a client sends a server: [`decode_client_message`], with a
//! short cut for `tools/call`, the request that matters for throughput.
//!
//! rmcp reads a `ClientRequest` by trying each kind of request in turn until
//! one fits, and each misfit builds an error message: a `tools/call` fails
//! thirteen times before it is read. Every kind tried before it has a fixed
//! method other than `tools/call`, so when the body reads as a `tools/call`
//! request, that is the kind rmcp would settle on too; anything else, or a
//! body that does not have the members of a request and none of a response
//! (rmcp's own first check), takes the general way. Either way the result is
//! what `serde_json::from_str` gives.

use rmcp::model::{
    CallToolRequest, ClientJsonRpcMessage, ClientNotification, ClientRequest, JsonRpcMessage,
    JsonRpcRequest,
};
use serde::Deserialize;

use super::codec::{Decoded, Inbound, decode_with};
use crate::queue::QueueMessage;

/// Decodes a message sent to a server, reading the reply address in the
/// parameters of an `initialize` only.
///
/// `message` is the message as sent, already out of any SNS envelope
/// ([`unwrap`](super::envelope::unwrap)), as for
/// [`decode_with`].
pub(crate) fn decode_client_message(
    message: &QueueMessage,
) -> Decoded<Inbound<ClientJsonRpcMessage>> {
    decode_with(message, parse_client_message, |message, _| {
        names_initialize(message)
    })
}

/// Whether a client message's `method` is `initialize`: an `initialize`
/// request, or one whose parameters rmcp did not take, which comes out as a
/// custom request or notification of that name.
pub(crate) fn names_initialize(message: &ClientJsonRpcMessage) -> bool {
    const INITIALIZE: &str = "initialize";
    match message {
        JsonRpcMessage::Request(request) => request.request.method() == INITIALIZE,
        JsonRpcMessage::Notification(notification) => matches!(
            &notification.notification,
            ClientNotification::CustomNotification(custom) if custom.method == INITIALIZE
        ),
        JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => false,
    }
}

/// Parses a client message as `serde_json::from_str` does, taking the
/// `tools/call` short cut (see the [module docs](self)) when it applies.
fn parse_client_message(body: &str) -> Option<ClientJsonRpcMessage> {
    read_tool_call(body).or_else(|| serde_json::from_str(body).ok())
}

/// `body` as a `tools/call` request, if it is one.
fn read_tool_call(body: &str) -> Option<ClientJsonRpcMessage> {
    /// A member present in the body, whatever its value (`null` included).
    #[derive(Default)]
    struct Present(bool);
    impl<'de> Deserialize<'de> for Present {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(deserializer).map(|_| Present(true))
        }
    }
    #[derive(Deserialize)]
    struct ToolCall {
        #[serde(default)]
        result: Present,
        #[serde(default)]
        error: Present,
        #[serde(flatten)]
        request: JsonRpcRequest<CallToolRequest>,
    }
    // A body without the method's text is not read twice (one that spells
    // it with escapes takes the general way, to the same result).
    if !body.contains("\"tools/call\"") {
        return None;
    }
    let call = serde_json::from_str::<ToolCall>(body).ok()?;
    if call.result.0 || call.error.0 {
        return None;
    }
    let JsonRpcRequest {
        jsonrpc,
        id,
        request,
    } = call.request;
    Some(ClientJsonRpcMessage::Request(JsonRpcRequest {
        jsonrpc,
        id,
        request: ClientRequest::CallToolRequest(request),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as `Debug` shows it and as it serializes (with the `_meta`
    /// kept in its extensions, which `Debug` does not show).
    fn shown(message: ClientJsonRpcMessage) -> (String, String) {
        let json = serde_json::to_string(&message).expect("serializable");
        (format!("{message:?}"), json)
    }

    /// What rmcp itself makes of `body`, for comparison.
    fn by_rmcp(body: &str) -> Option<(String, String)> {
        serde_json::from_str::<ClientJsonRpcMessage>(body)
            .ok()
            .map(shown)
    }

    #[test]
    fn the_tools_call_short_cut_reads_what_rmcp_reads() {
        for (index, body) in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
            r#"{"method":"tools/call","params":{"name":"e\u0063ho"},"id":"x-1","jsonrpc":"2.0","extra":[1]}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":"p","protocolVersion":"2025-06-18"}}}"#,
            // Not requests to rmcp: a response member beside the method.
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"},"error":null}"#,
            // Not a tools/call to rmcp either (missing or bad parameters,
            // another version, no id): whatever rmcp makes of them.
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"1.0","id":5,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","method":"ping","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"tools/call"}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo"}} trailing"#,
            r#"["tools/call"]"#,
        ]
        .into_iter()
        .enumerate()
        {
            // The first three take the short cut, the next two must not.
            match index {
                0..3 => assert!(read_tool_call(body).is_some(), "{body}"),
                3..5 => assert!(read_tool_call(body).is_none(), "{body}"),
                _ => {}
            }
            assert_eq!(parse_client_message(body).map(shown), by_rmcp(body), "{body}");
        }
    }

    #[test]
    fn initialize_is_recognised_whatever_rmcp_made_of_it() {
        let names = |body: &str| {
            let message: ClientJsonRpcMessage = serde_json::from_str(body).expect(body);
            names_initialize(&message)
        };
        assert!(names(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#
        ));
        // Parameters rmcp does not take: a custom request named initialize.
        assert!(names(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"response_queue_url":"memory://r"}}"#
        ));
        assert!(names(
            r#"{"jsonrpc":"2.0","method":"initialize","params":{}}"#
        ));
        assert!(!names(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
        assert!(!names(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ));
    }

    #[test]
    fn a_tools_call_decodes_with_its_headers_and_an_initialize_with_its_reply_address() {
        let call = QueueMessage::new(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
        )
        .with_string(super::super::attr::REPLY_TO, "memory://replies");
        let decoded = decode_client_message(&call);
        assert_eq!(
            decoded.headers.reply_to.as_deref(),
            Some("memory://replies")
        );
        let inbound = decoded.message.expect("a tools/call");
        assert!(matches!(
            inbound.message,
            ClientJsonRpcMessage::Request(JsonRpcRequest {
                request: ClientRequest::CallToolRequest(_),
                ..
            })
        ));
        assert_eq!(inbound.init_reply_to, None);

        let initialize = QueueMessage::new(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"response_queue_url":"memory://r"}}"#,
        );
        let inbound = decode_client_message(&initialize)
            .message
            .expect("an initialize");
        assert_eq!(inbound.init_reply_to.as_deref(), Some("memory://r"));
    }
}

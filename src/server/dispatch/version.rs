//! Which protocol version a request is served with.
//!
//! The server keeps no connection, so the service of each request is told
//! afresh what it would have learnt from `initialize`: 2026-07-28 requests
//! name their version in `_meta`; those of a legacy session carry it in the
//! sealed session id.

use rmcp::model::{
    ClientCapabilities, ClientRequest, GetMeta, Implementation, InitializeRequestParams,
    JsonRpcRequest, ProtocolVersion,
};

use crate::wire::session::SessionState;

/// What the service needs to know of its peer, rebuilt per request: the
/// version named in the request's `_meta` (2026-07-28), else the one the
/// session negotiated, else 2025-03-26 (as rmcp's stateless HTTP assumes).
pub(super) fn peer_info(
    request: &JsonRpcRequest<ClientRequest>,
    session: Option<&SessionState>,
) -> InitializeRequestParams {
    let version = request
        .request
        .get_meta()
        .protocol_version()
        .or_else(|| {
            session.and_then(|s| {
                serde_json::from_value(serde_json::Value::String(s.protocol_version.clone())).ok()
            })
        })
        .unwrap_or(ProtocolVersion::V_2025_03_26);
    InitializeRequestParams::new(ClientCapabilities::default(), Implementation::default())
        .with_protocol_version(version)
}

#[cfg(test)]
mod tests {
    use rmcp::model::ClientJsonRpcMessage;

    use super::*;

    fn request(body: &str) -> JsonRpcRequest<ClientRequest> {
        match serde_json::from_str(body).expect("a request") {
            ClientJsonRpcMessage::Request(request) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn session(version: &str) -> SessionState {
        SessionState {
            reply_to: "memory://replies".to_owned(),
            protocol_version: version.to_owned(),
            client_id: None,
        }
    }

    #[test]
    fn the_version_in_meta_wins_then_the_session_then_2025_03_26() {
        let with_meta = request(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        let plain = request(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        let legacy = session("2025-06-18");
        let version = |request, session| peer_info(request, session).protocol_version;
        assert_eq!(
            version(&with_meta, Some(&legacy)),
            ProtocolVersion::V_2026_07_28
        );
        assert_eq!(
            version(&plain, Some(&legacy)),
            ProtocolVersion::V_2025_06_18
        );
        assert_eq!(version(&plain, None), ProtocolVersion::V_2025_03_26);
    }
}

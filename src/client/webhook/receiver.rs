//! The embedded receiver: an HTTP listener taking the server's POSTs of
//! JSON-RPC messages into the transport's `receive()`.
//!
//! Each delivery is checked in this order, and refused without touching the
//! transport when it fails:
//!
//! 1. method and path: only `POST` to the receiver's path (else 405 / 404);
//! 2. size: a body over the limit is refused with 413 before it is read
//!    whole;
//! 3. signature, when a [`WebhookVerifier`] is configured: unsigned,
//!    tampered or stale deliveries get 401; a duplicate of one accepted
//!    already gets 200 (the sender must stop retrying) and is dropped;
//! 4. body: anything that is not one JSON-RPC message gets 400 with a
//!    JSON-RPC parse error;
//! 5. session: a delivery naming another session (`X-Session-ID`) than the
//!    one this client holds gets 409.
//!
//! What passes goes, with its `X-Request-ID` and `X-Sequence`, to the
//! transport's reordering buffer. The channel is bounded: a transport that
//! stops reading slows its senders down (their POSTs wait) rather than
//! growing memory; once it is gone, deliveries get 503.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rmcp::model::{ServerJsonRpcMessage, ServerResult};
use tokio::sync::mpsc;

use super::Shared;
use crate::client::order::Received;
use crate::queue::webhook::{VerifyError, WebhookVerifier};

/// What every delivery handler shares.
pub(super) struct ReceiverState {
    pub(super) shared: Arc<Shared>,
    pub(super) verifier: Option<Arc<WebhookVerifier>>,
    pub(super) sender: mpsc::Sender<Received>,
}

/// The receiver's routes: `POST path`, bodies of at most `max_body` bytes.
pub(super) fn router(path: &str, max_body: usize, state: Arc<ReceiverState>) -> Router {
    Router::new()
        .route(path, post(deliver))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// A JSON answer with `status`.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A 400 with a JSON-RPC parse error saying `why`.
fn parse_error(why: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32700, "message": format!("Parse error: {why}")},
        }),
    )
}

/// A header's text, if present and readable.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn deliver(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(verifier) = &state.verifier {
        match verifier.verify(&headers, &body) {
            Ok(_) => {}
            Err(VerifyError::Duplicate(id)) => {
                tracing::debug!(webhook_id = %id, "dropping a duplicate webhook delivery");
                return answer(StatusCode::OK, serde_json::json!({"status": "duplicate"}));
            }
            Err(error) => {
                tracing::warn!(%error, "refusing a webhook delivery");
                return answer(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": error.to_string()}),
                );
            }
        }
    }
    let message: ServerJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(%error, "refusing a webhook delivery that is not a JSON-RPC message");
            return parse_error(&error.to_string());
        }
    };
    let delivered_session = header_text(&headers, "x-session-id");
    if let (Some(ours), Some(theirs)) = (state.shared.session_id(), delivered_session)
        && ours != theirs
    {
        tracing::warn!(
            session = %theirs.chars().take(100).collect::<String>(),
            "refusing a webhook delivery for another session"
        );
        return answer(
            StatusCode::CONFLICT,
            serde_json::json!({"error": "the delivery names another session"}),
        );
    }
    // The initialize response carries the protocol version later requests
    // name, and (in X-Session-ID) the session, should it arrive before the
    // server's answer to the POST did.
    if let ServerJsonRpcMessage::Response(response) = &message
        && let ServerResult::InitializeResult(result) = &response.result
    {
        state
            .shared
            .initialized(delivered_session, result.protocol_version.to_string());
    }
    let received = Received {
        message,
        request_id: header_text(&headers, "x-request-id").map(str::to_owned),
        sequence: header_text(&headers, "x-sequence").and_then(|s| s.parse().ok()),
    };
    if state.sender.send(received).await.is_err() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "the client is closed"}),
        );
    }
    answer(StatusCode::OK, serde_json::json!({"status": "success"}))
}

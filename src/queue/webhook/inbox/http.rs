//! The HTTP side of the webhook inbox: `POST` queues one JSON-RPC message,
//! `DELETE` ends a session. Statuses and bodies as Python asyncmcp 0.2.1's
//! webhook server gives them; errors carry a JSON-RPC error body.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rmcp::model::{ErrorCode, RequestId};
use serde_json::{Value, json};

use super::{Admit, Shared};
use crate::queue::QueueMessage;
use crate::wire::{self, attr};

const X_CLIENT_ID: &str = "x-client-id";
const X_SESSION_ID: &str = "x-session-id";
const X_REQUEST_ID: &str = "x-request-id";
const X_METHOD: &str = "x-method";

/// The longest header value taken into an attribute.
const MAX_HEADER: usize = 1024;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let path = shared.path.clone();
    Router::new()
        .route(&path, post(post_message).delete(delete_session))
        .with_state(shared)
}

/// A JSON body with `status`.
fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A JSON-RPC error body answering the message with `id`.
fn rpc_error(status: StatusCode, id: Option<&RequestId>, code: ErrorCode, text: &str) -> Response {
    json_response(status, &wire::error_reply(id, code, text))
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty() && value.len() <= MAX_HEADER)
}

fn id_of(message: &Value) -> Option<RequestId> {
    match message.get("id")? {
        Value::Number(n) => n.as_i64().map(RequestId::Number),
        Value::String(s) => Some(RequestId::String(s.as_str().into())),
        _ => None,
    }
}

/// Checks a signature when the inbox requires one: `Some` answer refuses.
fn verify(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let error = shared.verifier.as_ref()?.verify(headers, body).err()?;
    tracing::warn!(%error, "webhook request refused");
    Some(rpc_error(
        StatusCode::UNAUTHORIZED,
        None,
        ErrorCode::INVALID_REQUEST,
        &format!("signature refused: {error}"),
    ))
}

async fn post_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let too_large = || {
        rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            ErrorCode::INVALID_REQUEST,
            &format!("request body exceeds {} bytes", shared.max_body),
        )
    };
    let declared = header_text(&headers, header::CONTENT_LENGTH.as_str())
        .and_then(|length| length.parse::<usize>().ok());
    if declared.is_some_and(|length| length > shared.max_body) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, shared.max_body).await else {
        // Past the limit (or the body broke off, which no answer reaches).
        return too_large();
    };
    if let Some(refused) = verify(&shared, &headers, &bytes) {
        return refused;
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            ErrorCode::PARSE_ERROR,
            "Parse error: body is not UTF-8",
        );
    };
    let message: Value = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(error) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                ErrorCode::PARSE_ERROR,
                &format!("Parse error: {error}"),
            );
        }
    };
    let id = id_of(&message);
    let method = message.get("method").and_then(Value::as_str);
    let is_jsonrpc = message.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && (method.is_some()
            || (message.get("id").is_some()
                && (message.get("result").is_some() || message.get("error").is_some())));
    if !is_jsonrpc {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.as_ref(),
            ErrorCode::INVALID_REQUEST,
            "Invalid Request: expected one JSON-RPC 2.0 message",
        );
    }
    let Some(client_id) = header_text(&headers, X_CLIENT_ID) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.as_ref(),
            ErrorCode::INVALID_REQUEST,
            "Missing X-Client-ID header",
        );
    };
    let session_id = header_text(&headers, X_SESSION_ID);
    if let Some(session) = session_id
        && shared.is_terminated(session)
    {
        return rpc_error(
            StatusCode::NOT_FOUND,
            id.as_ref(),
            ErrorCode::INVALID_REQUEST,
            "Session has been terminated",
        );
    }
    let webhook_url = message
        .get("params")
        .and_then(|params| params.get("_meta"))
        .and_then(|meta| meta.get(attr::META_WEBHOOK_URL))
        .and_then(Value::as_str)
        .filter(|url| !url.is_empty());
    let is_initialize = method == Some("initialize");
    if is_initialize && webhook_url.is_none() {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.as_ref(),
            ErrorCode::INVALID_PARAMS,
            "Missing webhookUrl in _meta field",
        );
    }

    let mut queued = QueueMessage::new(text)
        .with_string(attr::MESSAGE_TYPE, attr::JSONRPC)
        .with_string(attr::CLIENT_ID, client_id);
    for (name, value) in [
        (attr::SESSION_ID, session_id),
        (attr::REQUEST_ID, header_text(&headers, X_REQUEST_ID)),
        (attr::METHOD, header_text(&headers, X_METHOD).or(method)),
        (attr::REPLY_TO, webhook_url),
    ] {
        if let Some(value) = value {
            queued = queued.with_string(name, value);
        }
    }
    // Registered before queueing: the reply may be sent before `admit`
    // returns.
    let init_key = match (&id, is_initialize, webhook_url) {
        (Some(id), true, Some(url)) => Some((
            client_id.to_owned(),
            wire::request_id_text(id),
            url.to_owned(),
        )),
        _ => None,
    };
    // Forgets the waiter however the POST ends, its caller gone included.
    let _forget = init_key.clone().map(|key| Forget {
        shared: shared.clone(),
        key,
    });
    let waiting = init_key.map(|key| shared.expect_session(key));
    if let Err(refusal) = shared.admit(queued).await {
        return refused(&shared, id.as_ref(), refusal);
    }
    match waiting {
        Some(waiting) => {
            let outcome = tokio::time::timeout(shared.init_wait, waiting).await;
            match outcome {
                Ok(Ok(Some(session))) => session_created(&session),
                Ok(Ok(None)) => json_response(StatusCode::OK, &json!({"status": "received"})),
                // Not answered yet: the reply may still reach the webhook.
                Ok(Err(_)) | Err(_) => {
                    json_response(StatusCode::ACCEPTED, &json!({"status": "accepted"}))
                }
            }
        }
        _ if method == Some("notifications/initialized") => {
            json_response(StatusCode::OK, &json!({"status": "initialized"}))
        }
        _ => json_response(StatusCode::OK, &json!({"status": "received"})),
    }
}

/// Forgets an `initialize`'s waiter when its POST ends.
struct Forget {
    shared: Arc<Shared>,
    key: super::InitKey,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.shared.forget_waiters(&self.key);
    }
}

fn session_created(session: &str) -> Response {
    let mut response = json_response(
        StatusCode::OK,
        &json!({"status": "session_created", "session_id": session}),
    );
    if let Ok(value) = HeaderValue::from_str(session) {
        response.headers_mut().insert(X_SESSION_ID, value);
    }
    response
}

/// The answer to a POST that was not queued.
fn refused(shared: &Shared, id: Option<&RequestId>, refusal: Admit) -> Response {
    match refusal {
        Admit::Full => {
            let mut response = rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                ErrorCode::INTERNAL_ERROR,
                "server busy: too many requests in flight; retry later",
            );
            let seconds = shared.retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Admit::Failed(error) => {
            tracing::warn!(%error, "webhook request not queued");
            let status = match error {
                crate::queue::QueueError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            rpc_error(status, id, ErrorCode::INTERNAL_ERROR, &error.to_string())
        }
    }
}

async fn delete_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, shared.max_body).await else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            ErrorCode::INVALID_REQUEST,
            &format!("request body exceeds {} bytes", shared.max_body),
        );
    };
    if let Some(refused) = verify(&shared, &headers, &bytes) {
        return refused;
    }
    let Some(session) = header_text(&headers, X_SESSION_ID) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            ErrorCode::INVALID_REQUEST,
            "Missing X-Session-ID header",
        );
    };
    shared.terminate(session.to_owned());
    json_response(StatusCode::OK, &json!({"status": "terminated"}))
}

//! One HTTP exchange through the hybrid: what the request is, and what is
//! done with it (see the [module docs](super)).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use tower_service::Service;

use super::deliver::{self, Answer, Call};
use super::sessions::Hook;
use super::{BoxError, MAX_URL_LEN, SESSION_HEADER, Shared};
use crate::wire::attr;

/// What a POST's body is, as far as the hybrid cares.
enum Kind {
    /// `initialize` naming a webhook.
    Initialize { id: Value, url: String },
    /// `tools/call` of a webhook tool.
    WebhookCall { id: Value, tool: String },
    /// `notifications/cancelled` of request `id`.
    Cancel { id: Value },
    /// Anything else.
    Other,
}

fn classify(body: &[u8], tools: &HashSet<String>) -> Kind {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return Kind::Other;
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Kind::Other;
    };
    let params = message.get("params");
    if method == "notifications/cancelled" {
        return match params.and_then(|params| params.get("requestId")) {
            Some(id) => Kind::Cancel { id: id.clone() },
            None => Kind::Other,
        };
    }
    let Some(id) = message.get("id") else {
        return Kind::Other;
    };
    match method {
        "initialize" => {
            let url = params
                .and_then(|params| params.get("_meta"))
                .and_then(|meta| meta.get(attr::META_WEBHOOK_URL))
                .and_then(Value::as_str);
            match url {
                Some(url) => Kind::Initialize {
                    id: id.clone(),
                    url: url.to_owned(),
                },
                None => Kind::Other,
            }
        }
        "tools/call" => match params
            .and_then(|params| params.get("name"))
            .and_then(Value::as_str)
        {
            Some(tool) if tools.contains(tool) => Kind::WebhookCall {
                id: id.clone(),
                tool: tool.to_owned(),
            },
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

async fn forward<S, ResB>(mut inner: S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResB>, Error = Infallible>,
    ResB: HttpBody<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    match inner.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

fn session_of<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

pub(super) async fn handle<S, ReqB, ResB>(
    inner: S,
    shared: Arc<Shared>,
    request: Request<ReqB>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResB>, Error = Infallible>,
    ReqB: HttpBody<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: HttpBody<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let session = session_of(&request);
    if request.method() != Method::POST {
        let deleting = request.method() == Method::DELETE;
        let response = forward(inner, request.map(Body::new)).await;
        if let Some(session) = &session
            && (session_gone(&response) || deleting && response.status().is_success())
        {
            shared.sessions.forget(session);
        }
        return response;
    }

    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, shared.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        Err(error) => {
            tracing::debug!(%error, "hybrid: cannot read a request body");
            return plain(StatusCode::BAD_REQUEST, "cannot read the request body");
        }
    };
    let kind = classify(&bytes, &shared.tools);
    let client_id = parts
        .headers
        .get("x-client-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(256).collect::<String>());
    let request = Request::from_parts(parts, Body::from(bytes));
    if let (Kind::Cancel { id }, Some(session)) = (&kind, &session) {
        // Its stream will end without a result: nothing to report then.
        shared.calls.cancel(session, id);
    }

    match (kind, session) {
        // Only a new session gets a webhook: an `initialize` naming a
        // session (re-initializing, or forging another's id) changes none.
        (Kind::Initialize { id, url }, None) => {
            if let Err(reason) = check_url(&shared, &url) {
                tracing::info!(%reason, "hybrid: initialize refused: webhook URL not allowed");
                return jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    -32602,
                    &format!("params._meta.webhookUrl refused: {reason}"),
                    None,
                );
            }
            let response = forward(inner, request).await;
            let minted = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|value| value.to_str().ok());
            if response.status().is_success()
                && let Some(minted) = minted
            {
                shared
                    .sessions
                    .insert(minted.to_owned(), Hook { url, client_id });
            }
            response
        }
        (Kind::WebhookCall { id, tool }, Some(session)) => {
            let Some(hook) = shared.sessions.get(&session) else {
                return forward(inner, request).await;
            };
            let Ok(permit) = shared.detached.clone().try_acquire_owned() else {
                tracing::warn!(%session, %tool, "hybrid: too many detached webhook calls; refusing one");
                return jsonrpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &id,
                    -32000,
                    "too many webhook calls in flight; retry later",
                    Some(shared.retry_after),
                );
            };
            let response = forward(inner, request).await;
            let answer = answer_of(&response);
            let (Some(answer), true) = (answer, response.status() == StatusCode::OK) else {
                if session_gone(&response) {
                    shared.sessions.forget(&session);
                }
                return response;
            };
            let body = response.into_body();
            let mut accepted = Response::new(Body::empty());
            *accepted.status_mut() = StatusCode::ACCEPTED;
            if let Ok(value) = HeaderValue::from_str(&session) {
                accepted.headers_mut().insert(SESSION_HEADER, value);
            }
            let cancelled = shared.calls.register(&session, &id);
            let call = Call {
                id,
                session,
                tool,
                hook,
                cancelled,
            };
            tokio::spawn(deliver::run(shared.clone(), call, answer, body, permit));
            accepted
        }
        (_, session) => {
            let response = forward(inner, request).await;
            if let Some(session) = session
                && session_gone(&response)
            {
                shared.sessions.forget(&session);
            }
            response
        }
    }
}

/// Whether `url` may be a session's webhook (the connection-time address
/// check comes on every delivery).
fn check_url(shared: &Shared, url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    shared
        .outbox
        .policy()
        .check_url(url)
        .map(drop)
        .map_err(|error| error.to_string())
}

/// Whether `response` says its session is unknown: a `404` that is not a
/// JSON-RPC error (rmcp answers an unknown session `404` in plain text; a
/// `404` with a JSON-RPC body is an unknown method on the stateless path).
fn session_gone(response: &Response<Body>) -> bool {
    response.status() == StatusCode::NOT_FOUND && answer_of(response) != Some(Answer::Json)
}

/// How the inner service answered a call, when it is a stream or body the
/// hybrid can relay.
fn answer_of(response: &Response<Body>) -> Option<Answer> {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let essence = content_type.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Some(Answer::Sse)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Answer::Json)
    } else {
        None
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn jsonrpc_error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    retry_after: Option<Duration>,
) -> Response<Body> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = retry_after {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhook_tools_calls_and_webhook_initializes_are_picked_out() {
        let tools: HashSet<String> = ["slow".to_owned()].into();
        let kind = |body: Value| classify(body.to_string().as_bytes(), &tools);
        assert!(matches!(
            kind(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}})),
            Kind::WebhookCall { .. }
        ));
        for other in [
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fast"}}),
            json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"slow"}}),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}),
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"_meta":{"webhookUrl":7}}}),
            json!([{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}]),
        ] {
            assert!(matches!(kind(other.clone()), Kind::Other), "{other}");
        }
        assert!(matches!(
            kind(json!({"jsonrpc":"2.0","id":0,"method":"initialize",
                "params":{"_meta":{"webhookUrl":"https://x/"}}})),
            Kind::Initialize { .. }
        ));
        assert!(matches!(
            kind(json!({"jsonrpc":"2.0","method":"notifications/cancelled",
                "params":{"requestId":3}})),
            Kind::Cancel { .. }
        ));
        assert!(matches!(classify(b"not json", &tools), Kind::Other));
    }
}

//! The floor of the webhook transport: an HTTP request/reply round trip with
//! no MCP in it.
//!
//! The client POSTs each request's id as the body, naming its receiver in
//! `X-Reply-To`; the server answers the POST at once and POSTs the id back
//! to that receiver, which answers it and wakes the waiting call. That is a
//! webhook round trip's shape (two POSTs, each acknowledged, over pooled
//! keep-alive connections, with the same HTTP stacks: reqwest and axum)
//! without JSON-RPC, sessions, ordering, the address checks or signing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::protocol;
use crate::webhook::WebhookArgs;

/// How long a raw call waits for its reply before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The header naming where the reply goes.
const REPLY_TO: &str = "x-reply-to";

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

/// The raw server: acknowledge the POST, then POST its body back to
/// `X-Reply-To`. It sends wherever that names: it is the bench's, on
/// loopback, driven by the bench's own client.
pub async fn serve(_args: WebhookArgs) -> anyhow::Result<()> {
    let http = client()?;
    let app = axum::Router::new().route(
        "/raw",
        post(move |headers: HeaderMap, body: Bytes| {
            let http = http.clone();
            async move {
                let Some(reply_to) = headers.get(REPLY_TO).and_then(|v| v.to_str().ok()) else {
                    return StatusCode::BAD_REQUEST;
                };
                let reply = http.post(reply_to).body(body);
                tokio::spawn(async move {
                    match reply.send().await {
                        Ok(answer) if answer.status().is_success() => {}
                        Ok(answer) => {
                            tracing::warn!(status = %answer.status(), "raw reply refused")
                        }
                        Err(e) => tracing::warn!(error = %e, "raw reply failed"),
                    }
                });
                StatusCode::OK
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/raw", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    protocol::serve_server_at(&url).await?;
    server.abort();
    Ok(())
}

/// The raw client: POST ids, match the ids POSTed back to its receiver.
pub async fn drive(args: WebhookArgs) -> anyhow::Result<()> {
    let server_url = args.server_url()?.to_owned();
    let pending: Pending = Arc::default();
    let receiver = axum::Router::new().route(
        "/reply",
        post({
            let pending = pending.clone();
            move |body: String| {
                let waiter = body.parse::<u64>().ok().and_then(|id| {
                    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.remove(&id)
                });
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
                async { StatusCode::OK }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let reply_to = format!("http://{}/reply", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let http = client()?;
    let next_id = Arc::new(AtomicU64::new(0));
    let call = move || {
        let (http, pending, next_id) = (http.clone(), pending.clone(), next_id.clone());
        let (server_url, reply_to) = (server_url.clone(), reply_to.clone());
        async move {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, tx);
            let answer = http
                .post(server_url)
                .header(REPLY_TO, reply_to)
                .body(id.to_string())
                .send()
                .await?;
            anyhow::ensure!(
                answer.status().is_success(),
                "server answered {}",
                answer.status()
            );
            tokio::time::timeout(CALL_TIMEOUT, rx)
                .await
                .context("no reply")?
                .context("reply lost")
        }
    };
    crate::run_level(args.warm_up, 10, call.clone()).await;
    protocol::serve_client(&asyncmcp::queue::sqs::ApiCallCounter::new(), call).await
}

/// An HTTP client as the webhook outbox and client use: pooled keep-alive
/// connections, no proxy, no redirects.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(CALL_TIMEOUT)
        .build()?)
}

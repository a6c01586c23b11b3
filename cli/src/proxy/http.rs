//! The Streamable HTTP proxy: any number of MCP client sessions at
//! `http://ADDR/mcp`, all over the one server connection.
//!
//! rmcp's [`StreamableHttpService`] runs the sessions (each gets a
//! [`Front`] sharing the connection); this module adds the bearer token
//! check, the listener and the shutdown. On a loopback address rmcp's check
//! of the `Host` header against DNS rebinding stays on; on another address
//! (only allowed with a token, which a rebinding page cannot send) the
//! proxy cannot know the names it is reached by, so the check is off.
//!
//! With `--webhook-tools` the service is wrapped in the library's
//! [`HybridLayer`](asyncmcp::hybrid::HybridLayer) (see [`hybrid`](super::hybrid)),
//! inside the bearer token check: a webhook is only ever taken from a caller
//! that got past it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use asyncmcp::hybrid::HybridLayer;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

use super::front::Front;
use super::hybrid::WebhookTools;
use super::link::Link;
use super::{Server, ServerConnection, open};
use crate::bridge::LogSink;
use crate::exit::{Done, Failure};

/// How long open HTTP connections (e.g. event streams) may take to close on
/// shutdown before they are dropped.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Listens on `address`, connects to the server, and serves until a
/// signal; closes the server connection (deleting its reply queue, ending
/// its webhook session) either way.
pub(super) async fn run(
    server: Server<'_>,
    address: SocketAddr,
    token: Option<String>,
    webhook_tools: Option<WebhookTools>,
) -> Result<Done, Failure> {
    // Before connecting, as the port below: a bad setting fails at once.
    let hybrid = webhook_tools
        .as_ref()
        .map(WebhookTools::layer)
        .transpose()
        .map_err(|error| {
            Failure::other(anyhow::Error::new(error).context("cannot build the webhook outbox"))
        })?;
    if let Some(tools) = &webhook_tools {
        tracing::info!(tools = ?tools.tools, prefixes = ?tools.replies.prefixes,
            "calls of the webhook tools are answered at the caller's webhook");
    }
    // Before connecting: a port in use fails at once, creating nothing.
    let listener = TcpListener::bind(address).await.map_err(|error| {
        Failure::other(anyhow::Error::new(error).context(format!("cannot listen on {address}")))
    })?;
    let (mut session, downstream) = open(server, LogSink::Stderr).await?;
    let outcome = serve(&mut session, listener, downstream, token, hybrid).await;
    session.finish(outcome).await
}

async fn serve(
    session: &mut Link,
    listener: TcpListener,
    downstream: ServerConnection,
    token: Option<String>,
    hybrid: Option<HybridLayer>,
) -> Result<Done, Failure> {
    let address = listener.local_addr().map_err(Failure::other)?;
    let stop = CancellationToken::new();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token());
    if !address.ip().is_loopback() {
        config = config.disable_allowed_hosts();
    }
    let service = StreamableHttpService::new(
        move || Ok(Front::new(downstream.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut router = match hybrid {
        None => Router::new().route_service("/mcp", service),
        Some(hybrid) => Router::new().route_service("/mcp", hybrid.layer(service)),
    };
    if let Some(token) = token {
        router = router.layer(middleware::from_fn_with_state(
            Arc::new(Token::new(&token)),
            check_bearer,
        ));
    }
    let server =
        axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut serving = tokio::spawn(server.into_future());
    eprintln!("asyncmcp proxy: listening on http://{address}/mcp");
    let served = session.until_signal(&mut serving).await;
    match served {
        Err(signal) => {
            tracing::info!(%signal, "stopping");
            stop.cancel();
            if tokio::time::timeout(SHUTDOWN_LIMIT, &mut serving)
                .await
                .is_err()
            {
                tracing::warn!("HTTP connections still open after {SHUTDOWN_LIMIT:?}; dropped");
                serving.abort();
            }
            Ok(Done::Success)
        }
        Ok(Ok(Ok(()))) => Ok(Done::Success),
        Ok(Ok(Err(error))) => Err(Failure::other(
            anyhow::Error::new(error).context("the HTTP server failed"),
        )),
        Ok(Err(error)) => Err(Failure::other(
            anyhow::Error::new(error).context("the HTTP server task failed"),
        )),
    }
}

/// The bearer token, kept as its digest: comparing digests takes the same
/// time whatever the token sent, so timing tells nothing about the token.
struct Token([u8; 32]);

impl Token {
    fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `header` (an `Authorization` value) carries the token.
    fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(sent) = header.and_then(|value| value.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(sent).into();
        digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

/// Answers 401 to a request without the bearer token.
async fn check_bearer(State(token): State<Arc<Token>>, request: Request, next: Next) -> Response {
    let sent = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    if token.admits(sent) {
        return next.run(request).await;
    }
    tracing::info!(uri = %request.uri(), "refused a request without the bearer token");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required: Authorization: Bearer <token>\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_is_admitted() {
        let token = Token::new("s3cret");
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(!token.admits(Some(b"Bearer s3cret2")));
        assert!(!token.admits(Some(b"bearer s3cret")));
        assert!(!token.admits(Some(b"s3cret")));
        assert!(!token.admits(None));
    }
}

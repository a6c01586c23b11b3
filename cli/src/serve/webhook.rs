//! The webhook forms of `serve`: requests taken over HTTP (the library's
//! webhook inbox, Python asyncmcp 0.2.1's wire) and replies POSTed to the
//! caller's webhook (the webhook outbox, behind its SSRF guard).
//!
//! With `--webhook-listen` the inbox feeds the `QueueServer` and the outbox,
//! wrapped in the inbox's session tap, answers. With `--queue-url` and
//! `--reply-webhook` the SQS inbox feeds it and a routing outbox sends to
//! SQS queues, SNS topics and webhooks alike: the builder `QueueServer::sqs`
//! has no way to add a route, so the same parts are put together here.
//!
//! With a secret in `ASYNCMCP_WEBHOOK_SECRET` (see
//! [`webhook_secret`](crate::webhook_secret)) every reply POSTed to a
//! webhook is signed, and requests at `--webhook-listen` without a valid
//! signature are refused (401) before they reach the server process.

use std::net::SocketAddr;
use std::sync::Arc;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{SqsInbox, SqsOutbox, sdk_config_from_env};
use asyncmcp::queue::webhook::{DEFAULT_PATH, HttpLimits, WebhookInbox, WebhookVerifier};

use crate::webhook_replies::WebhookReplies;
use asyncmcp::queue::{Outbox, QueueError, RoutingOutbox, sns, sqs};
use asyncmcp::server::QueueServerBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The server's reply allow-list, with the webhook prefixes too.
fn allow(replies: &WebhookReplies, mut builder: QueueServerBuilder) -> QueueServerBuilder {
    for prefix in &replies.prefixes {
        builder = builder.allow_reply_prefix(prefix.clone());
    }
    builder
}

/// A server builder on the SQS queue `queue_url` whose replies go to SQS
/// queues, SNS topics and the allowed webhooks.
pub(super) async fn sqs_with_webhooks(
    queue_url: &str,
    replies: &WebhookReplies,
) -> Result<QueueServerBuilder, QueueError> {
    let sdk = sdk_config_from_env().await;
    let sqs_client = sqs::client(&sdk);
    let inbox = SqsInbox::open(sqs_client.clone(), queue_url).await?;
    // The webhook outbox refuses queue URLs, so the order only matters for
    // speed: queue replies are the common case.
    let outbox = RoutingOutbox::new()
        .with(Arc::new(sns::SnsOutbox::new(sns::client(&sdk))))
        .with(Arc::new(SqsOutbox::new(sqs_client)))
        .with(Arc::new(replies.outbox()?));
    Ok(allow(replies, QueueServer::builder(inbox, outbox)))
}

/// The HTTP front of `--webhook-listen`: bound, not yet serving.
pub(super) struct HttpFront {
    listener: TcpListener,
    inbox: WebhookInbox,
    /// The URL requests are POSTed to, for the ready line.
    pub(super) url: String,
}

/// Binds `address` and builds the inbox (checking signatures with
/// `verifier`, when given) and the outbox behind it; returns the builder of
/// the server taking the inbox's requests, and the front.
pub(super) async fn listen(
    address: SocketAddr,
    replies: &WebhookReplies,
    verifier: Option<WebhookVerifier>,
) -> Result<(QueueServerBuilder, HttpFront), ListenError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ListenError::Bind { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError::Bind { address, source })?;
    let mut inbox = WebhookInbox::builder();
    if let Some(verifier) = verifier {
        inbox = inbox.verifier(verifier);
    }
    let inbox = inbox.build();
    let outbox: Arc<dyn Outbox> = Arc::new(replies.outbox()?);
    let builder = allow(
        replies,
        QueueServer::builder(inbox.clone(), inbox.tap(outbox)),
    );
    let front = HttpFront {
        listener,
        inbox,
        url: format!("http://{bound}{DEFAULT_PATH}"),
    };
    Ok((builder, front))
}

impl HttpFront {
    /// Serves the inbox's routes until `stop` is cancelled (calls already
    /// accepted are still answered: the server drains after).
    pub(super) fn serve(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        // The library's serve loop, not axum's: it bounds connections and
        // times out stalled heads and requests, for a port on the internet.
        tokio::spawn(asyncmcp::queue::webhook::serve(
            self.listener,
            self.inbox.router(),
            HttpLimits::default(),
            stop,
        ))
    }
}

/// Why `--webhook-listen` could not start.
#[derive(Debug, thiserror::Error)]
pub(super) enum ListenError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The webhook outbox could not be built.
    #[error("cannot build the webhook outbox: {0}")]
    Outbox(#[from] QueueError),
}

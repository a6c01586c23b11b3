//! Where answers POSTed to callers' webhooks may go, from the flags
//! `serve` and `proxy` share (`--reply-webhook`, `--allow-loopback-webhooks`,
//! `--allow-http-webhooks`) and the secret signing them: one outbox, built
//! the same way for both.

use asyncmcp::queue::QueueError;
use asyncmcp::queue::webhook::{WebhookOutbox, WebhookPolicy, WebhookSigner};

/// Where webhook answers may go, and how they are signed.
#[derive(Debug, Clone)]
pub(crate) struct WebhookReplies {
    /// `--reply-webhook`: URL prefixes answers may be POSTed to.
    pub(crate) prefixes: Vec<String>,
    /// `--allow-loopback-webhooks`.
    pub(crate) allow_loopback: bool,
    /// `--allow-http-webhooks` (implied by loopback: a local receiver has
    /// no certificate).
    pub(crate) allow_http: bool,
    /// Signs every delivery, with `ASYNCMCP_WEBHOOK_SECRET`.
    pub(crate) signer: Option<WebhookSigner>,
}

impl WebhookReplies {
    /// The outbox POSTing answers to the allowed webhooks.
    pub(crate) fn outbox(&self) -> Result<WebhookOutbox, QueueError> {
        let policy = WebhookPolicy::prefixes(self.prefixes.iter().cloned())
            .allow_loopback(self.allow_loopback)
            .allow_http(self.allow_http || self.allow_loopback);
        let mut builder = WebhookOutbox::builder(policy);
        if let Some(signer) = &self.signer {
            builder = builder.signer(signer.clone());
        }
        builder.build()
    }
}

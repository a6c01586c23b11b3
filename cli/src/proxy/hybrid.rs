//! `proxy --listen --webhook-tools`: the StreamableHTTP+webhook hybrid
//! (Python asyncmcp 0.2.1's `streamable_http_webhook_client`) in front of
//! the proxy's Streamable HTTP service.
//!
//! A client naming its webhook in `initialize` (`params._meta.webhookUrl`)
//! gets calls of the named tools acknowledged `202` at once and answered at
//! that webhook; every other request, and every call in a session without a
//! webhook, is answered on its stream as before. The library's
//! [`HybridLayer`] does the work; this module turns the flags into one. The
//! webhook URL allow-list and its switches mean what they mean on `serve`.

use asyncmcp::hybrid::HybridLayer;
use asyncmcp::queue::QueueError;
use asyncmcp::queue::webhook::{WebhookOutbox, WebhookPolicy, WebhookSigner};

/// The webhook tools and where their answers may go, from the flags.
#[derive(Debug, Clone)]
pub(super) struct WebhookTools {
    /// `--webhook-tools`: the tools answered at the caller's webhook.
    pub(super) tools: Vec<String>,
    /// `--reply-webhook`: URL prefixes a caller's webhook must start with.
    pub(super) prefixes: Vec<String>,
    /// `--allow-loopback-webhooks`.
    pub(super) allow_loopback: bool,
    /// `--allow-http-webhooks` (implied by loopback, as on `serve`: a local
    /// receiver has no certificate).
    pub(super) allow_http: bool,
    /// Signs every delivery, with `ASYNCMCP_WEBHOOK_SECRET`.
    pub(super) signer: Option<WebhookSigner>,
}

impl WebhookTools {
    /// The layer answering the webhook tools at the callers' webhooks.
    pub(super) fn layer(&self) -> Result<HybridLayer, QueueError> {
        let policy = WebhookPolicy::prefixes(self.prefixes.iter().cloned())
            .allow_loopback(self.allow_loopback)
            .allow_http(self.allow_http || self.allow_loopback);
        let mut outbox = WebhookOutbox::builder(policy);
        if let Some(signer) = &self.signer {
            outbox = outbox.signer(signer.clone());
        }
        Ok(HybridLayer::builder(outbox.build()?)
            .webhook_tools(self.tools.iter().cloned())
            .build())
    }
}

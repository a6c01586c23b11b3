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

use crate::webhook_replies::WebhookReplies;

/// The webhook tools and where their answers may go, from the flags.
#[derive(Debug, Clone)]
pub(super) struct WebhookTools {
    /// `--webhook-tools`: the tools answered at the caller's webhook.
    pub(super) tools: Vec<String>,
    /// `--reply-webhook` and its switches, as on `serve`, and the signer.
    pub(super) replies: WebhookReplies,
}

impl WebhookTools {
    /// The layer answering the webhook tools at the callers' webhooks.
    pub(super) fn layer(&self) -> Result<HybridLayer, QueueError> {
        Ok(HybridLayer::builder(self.replies.outbox()?)
            .webhook_tools(self.tools.iter().cloned())
            .build())
    }
}

//! Giving a request back to the queue unanswered.
//!
//! A handler that cannot run a request now, and must not answer it with a
//! result it did not compute, asks for it to be delivered again: a proxy
//! whose backend died mid-call (`asyncmcp serve`, when its child process
//! exits) is the case this exists for. The request then follows the
//! late-ack rules of a reply that could not be sent: it is left for a
//! redelivery after a short backoff and, on the last delivery the server's
//! dead-lettering allows, dead-lettered with the handler's reason (the
//! caller is told). Without the server's dead-lettering, the queue's own
//! redrive policy ends the loop.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// The handle a handler uses to give its request back to the queue.
///
/// Each request's [`RequestContext::extensions`] on a
/// [`QueueServer`](crate::QueueServer) holds one:
///
/// ```
/// # use rmcp::{ErrorData, RoleServer, service::RequestContext};
/// # use asyncmcp::server::Redeliver;
/// fn backend_gone(context: &RequestContext<RoleServer>) -> ErrorData {
///     if let Some(redeliver) = context.extensions.get::<Redeliver>() {
///         redeliver.request("the backend exited before answering");
///     }
///     // Not sent when the request is redelivered.
///     ErrorData::internal_error("backend exited", None)
/// }
/// ```
///
/// Once [`request`](Self::request) is called, nothing more the handler
/// emits for this request is sent (its notifications and its response are
/// dropped) and the handler is cancelled.
///
/// [`RequestContext::extensions`]: rmcp::service::RequestContext
#[derive(Clone, Default)]
pub struct Redeliver {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    requested: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl fmt::Debug for Redeliver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redeliver")
            .field("reason", &self.reason())
            .finish()
    }
}

impl Redeliver {
    /// A handle nobody has asked yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Ends the request unanswered and leaves it for redelivery; `reason`
    /// is logged, and is what a dead-lettered copy and the caller are told
    /// if this was its last allowed delivery. The first reason given wins.
    pub fn request(&self, reason: impl Into<String>) {
        let mut kept = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            *kept = Some(reason.into());
        }
        drop(kept);
        self.inner.requested.cancel();
    }

    /// Whether [`request`](Self::request) was called.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.is_cancelled()
    }

    /// The reason given, once requested.
    pub(crate) fn reason(&self) -> Option<String> {
        self.inner
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Completes once [`request`](Self::request) is called.
    pub(crate) async fn requested(&self) {
        self.inner.requested.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_clones_share_the_request() {
        let redeliver = Redeliver::new();
        assert!(!redeliver.is_requested());
        assert_eq!(redeliver.reason(), None);
        let handed_out = redeliver.clone();
        handed_out.request("child exited");
        handed_out.request("later reason");
        assert!(redeliver.is_requested());
        assert_eq!(redeliver.reason().as_deref(), Some("child exited"));
        tokio::time::timeout(std::time::Duration::from_secs(1), redeliver.requested())
            .await
            .expect("requested completes once asked");
    }
}

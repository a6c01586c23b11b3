//! The forwarding server service.

use std::future::Future;
use std::ops::Deref;

use rmcp::model::{
    CancelledNotificationParam, ClientNotification, ClientRequest, ErrorData, RequestMetaObject,
    ServerConfig, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, ServiceError};
use rmcp::{RoleServer, ServerHandler, Service};

use super::cache::ListKind;
use super::downstream::Connection;
use super::progress::{Route, SETTLE_LIMIT};
use asyncmcp::server::Redeliver;

/// No downstream connection can take a request now (e.g. every child
/// process is restarting); the text says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(pub(crate) String);

/// Where a [`Forwarder`] sends requests: one connection, or a pool of them.
pub(crate) trait Downstream: Send + Sync + 'static {
    /// A connection held for one request (a pool counts it as busy until
    /// the lease is dropped).
    type Lease: Deref<Target = Connection> + Send;

    /// A live connection for the next request.
    fn lease(&self) -> impl Future<Output = Result<Self::Lease, Unavailable>> + Send;

    /// Why a request's connection closed before its answer, as the caller
    /// (or a dead-lettered copy) is told.
    fn closed(&self) -> &'static str {
        "the server's connection closed before it answered"
    }
}

/// An rmcp server service that forwards each request to a [`Downstream`]:
/// see the module docs of [`bridge`](super).
#[derive(Debug, Clone)]
pub(crate) struct Forwarder<D> {
    downstream: D,
}

impl<D: Downstream> Forwarder<D> {
    /// Forwards to `downstream`.
    pub(crate) fn new(downstream: D) -> Self {
        Self { downstream }
    }

    async fn forward(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let lease = match self.downstream.lease().await {
            Ok(lease) => lease,
            Err(unavailable) => return Err(lost(context, &unavailable.0)),
        };
        let connection: &Connection = &lease;
        let list = ListKind::of_first_page(&request);
        let generation = match list {
            Some(kind) => {
                if let Some(page) = connection.lists.get(kind) {
                    return Ok(page);
                }
                Some((kind, connection.lists.generation(kind)))
            }
            None => None,
        };
        let options = {
            let mut options = PeerRequestOptions::no_options();
            options.meta = passed_on_meta(&context.meta);
            options
        };
        let sending = connection.routes.sending.lock().await;
        let handle = match connection
            .peer
            .send_cancellable_request(request, options)
            .await
        {
            Ok(handle) => handle,
            Err(error) => return Err(failed(context, error, self.downstream.closed())),
        };
        let downstream_token = handle.progress_token.clone();
        if let Some(token) = context.meta.get_progress_token() {
            connection.routes.insert(
                downstream_token.clone(),
                Route {
                    peer: context.peer.clone(),
                    token,
                },
            );
        }
        drop(sending);
        let (id, peer) = (handle.id.clone(), handle.peer.clone());
        let answer = tokio::select! {
            answer = handle.await_response() => answer,
            () = context.ct.cancelled() => {
                let cancelled = CancelledNotificationParam::new(
                    Some(id),
                    Some("cancelled by the caller".to_owned()),
                );
                if let Err(error) = peer.notify_cancelled(cancelled).await {
                    tracing::debug!(%error, "cancellation not passed on: the server is gone");
                }
                Err(ServiceError::Cancelled { reason: None })
            }
        };
        // rmcp handles each notification on a task of its own: let those of
        // progress that came before the answer pass on before it does.
        if !connection
            .routes
            .settled(&downstream_token, SETTLE_LIMIT)
            .await
        {
            tracing::debug!(
                "answering before all of the request's progress passed on: the caller is slow to take it"
            );
        }
        connection.routes.remove(&downstream_token);
        let result = answer.map_err(|error| failed(context, error, self.downstream.closed()))?;
        if let Some((kind, generation)) = generation {
            connection.lists.store(kind, generation, result.clone());
        }
        Ok(result)
    }
}

impl<D: Downstream> Service<RoleServer> for Forwarder<D> {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        match request {
            ClientRequest::InitializeRequest(_)
            | ClientRequest::DiscoverRequest(_)
            | ClientRequest::PingRequest(_) => {
                let info = match self.downstream.lease().await {
                    Ok(lease) => lease.info.clone(),
                    Err(unavailable) => return Err(lost(&context, &unavailable.0)),
                };
                Front(info).handle_request(request, context).await
            }
            request => self.forward(request, &context).await,
        }
    }

    async fn handle_notification(
        &self,
        _notification: ClientNotification,
        _context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // `notifications/cancelled` is handled by rmcp (it cancels the
        // request's token, which `forward` passes on); `initialized` and
        // `roots/list_changed` concern this connection, not the downstream
        // server, which was initialized once, by this process.
        Ok(())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::default()
    }
}

/// Answers the protocol's own requests as the downstream server would.
struct Front(ServerConfig);

impl ServerHandler for Front {
    fn get_info(&self) -> ServerConfig {
        self.0.clone()
    }
}

/// The caller's `_meta` without what belongs to the caller's own connection
/// (its progress token, replaced by rmcp's, and the protocol's
/// `io.modelcontextprotocol/*` keys, which describe the caller's protocol
/// version, not the one the downstream connection negotiated).
fn passed_on_meta(meta: &RequestMetaObject) -> Option<RequestMetaObject> {
    let serde_json::Value::Object(mut fields) = serde_json::to_value(meta).ok()? else {
        return None;
    };
    fields.retain(|key, _| key != "progressToken" && !key.starts_with("io.modelcontextprotocol/"));
    if fields.is_empty() {
        return None;
    }
    serde_json::from_value(serde_json::Value::Object(fields)).ok()
}

/// The error for a request the downstream did not answer: its own error
/// as it is; otherwise, the downstream is gone ([`lost`]).
fn failed(context: &RequestContext<RoleServer>, error: ServiceError, closed: &str) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        ServiceError::Cancelled { .. } => {
            ErrorData::internal_error("the request was cancelled", None)
        }
        ServiceError::TransportClosed => lost(context, closed),
        other => lost(context, &format!("the server did not answer: {other}")),
    }
}

/// A request whose downstream is gone. On a queue server it is given back
/// to the queue, to be run again (or dead-lettered), never answered as if
/// it had run; elsewhere the caller gets this error.
fn lost(context: &RequestContext<RoleServer>, reason: &str) -> ErrorData {
    if let Some(redeliver) = context.extensions.get::<Redeliver>() {
        tracing::warn!(%reason, request_id = %context.id, "server unavailable; request given back to the queue");
        redeliver.request(reason);
    }
    ErrorData::internal_error(reason.to_owned(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_keys_and_the_progress_token_stay_behind() {
        let meta: RequestMetaObject = serde_json::from_value(serde_json::json!({
            "progressToken": 7,
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "trace": "abc"
        }))
        .expect("meta");
        let passed = serde_json::to_value(passed_on_meta(&meta)).expect("json");
        assert_eq!(passed, serde_json::json!({"trace": "abc"}));
        let only_protocol: RequestMetaObject =
            serde_json::from_value(serde_json::json!({"progressToken": 1})).expect("meta");
        assert!(passed_on_meta(&only_protocol).is_none());
    }
}

//! Dispatch: one delivery, from the poller that received it to its settling.
//! Every path settles the delivery: acked, released, or left for a
//! redelivery.
//!
//! Where things happen, in the order a delivery meets them:
//!
//! * **Received** by a poller (`server/poller.rs`), which spawns
//!   [`Shared::handle`] for it.
//! * **Unwrapped and checked** before it gets here, by the inbox's
//!   [layers](crate::queue::layer): out of any SNS envelope, its signature
//!   and age verified (a refusal marks [`Delivery::refused`]).
//! * **Decoded** in [`Shared::handle`] by [`wire::decode_client_message`]
//!   (with its `tools/call` short cut).
//! * **Checked**: a layer's refusal and the session id, in `route.rs`.
//! * **Routed** in `route.rs`: where replies go (checked against the
//!   [`ReplyPolicy`](super::ReplyPolicy)) and who sent it (the origin, for
//!   cancellation and logs).
//! * **Refused** in `refusal.rs`: why a message is refused or cannot be
//!   answered ([`Refused`](refusal::Refused)), and its error reply, sent
//!   where that is safe.
//! * **Served** in `serve.rs`: duplicates held or answered from replay,
//!   poison dead-lettered (`server/dead_letter.rs`), the rest run through a
//!   fresh service (`server/request.rs`) with the protocol version from
//!   `version.rs`; `notifications/cancelled` reaches the request it names.
//! * **Settled** in `settle.rs`: acked once the answer is sent (late ack),
//!   left for a quick redelivery when the send failed for a passing reason,
//!   released at shutdown.

mod limit;
mod refusal;
mod route;
mod serve;
mod settle;
mod version;

use std::sync::Arc;

use rmcp::model::{ClientJsonRpcMessage, ClientNotification};
use tokio_util::sync::CancellationToken;

use super::clip::clip;
use super::inflight::{self, InFlight};
use super::limits::Gate;
use super::replay::{self, ReplayCache};
use super::{ServerConfig, ServiceFactory};
use crate::queue::{Delivery, Inbox, Outbox};
use crate::wire::{self, Decoded};

pub(super) use route::reply_headers;

/// State shared by the pollers and every request of one server.
pub(super) struct Shared<F> {
    pub(super) factory: F,
    pub(super) inbox: Arc<dyn Inbox>,
    /// Signs what it sends when the server signs.
    pub(super) outbox: Arc<dyn Outbox>,
    /// The same outbox without signing, for answers to refused messages.
    pub(super) unsigned_outbox: Arc<dyn Outbox>,
    pub(super) config: ServerConfig,
    pub(super) inflight: Arc<InFlight>,
    /// Final responses of answered requests, for duplicates.
    pub(super) replay: ReplayCache,
    /// Cancelled when the shutdown grace period is over.
    pub(super) abandon: CancellationToken,
    /// The tool limits, when any is set.
    pub(super) gate: Option<Arc<Gate>>,
}

impl<F: ServiceFactory> Shared<F> {
    pub(super) fn new(
        factory: F,
        inbox: Arc<dyn Inbox>,
        outbox: Arc<dyn Outbox>,
        unsigned_outbox: Arc<dyn Outbox>,
        config: ServerConfig,
    ) -> Self {
        // Kept at least as long as a redelivery can take (see replay.rs).
        let lifetime = replay::lifetime(config.replay_window, inbox.info().visibility_timeout);
        Self {
            factory,
            inbox,
            outbox,
            unsigned_outbox,
            replay: ReplayCache::new(lifetime, config.replay_budget),
            gate: config
                .limits
                .is_set()
                .then(|| Arc::new(Gate::new(config.limits.clone()))),
            config,
            inflight: Arc::default(),
            abandon: CancellationToken::new(),
        }
    }

    /// Handles one delivery to the end and settles it: decode, check,
    /// route, then run, cancel, refuse or drop.
    pub(super) async fn handle(self: Arc<Self>, delivery: Delivery) {
        // As near to the broker's receipt as this process knows: the
        // visibility ceiling counts from there.
        let received = tokio::time::Instant::now();
        // Out of any SNS envelope already (the inbox's layer): the message
        // as it was sent, what is decoded and what identifies a request.
        let message = &delivery.message;
        let Decoded {
            headers,
            message: mut decoded,
        } = wire::decode_client_message(message);
        let init_reply_to = decoded
            .as_mut()
            .ok()
            .and_then(|inbound| inbound.init_reply_to.take());
        // Refused by an inbox layer (a signature that does not verify):
        // nothing the message claims can be trusted, its route included.
        #[cfg(feature = "offload")]
        if let Some(refused) = &delivery.refused
            && self.payload_refusal_is_trusted(refused)
        {
            return match self.route(&headers, None) {
                Ok(route) => {
                    self.refuse_payload(&delivery, &headers, &route, refused)
                        .await
                }
                Err(refused) => self.refuse(&delivery, &headers, &decoded, refused).await,
            };
        }
        let route = match &delivery.refused {
            Some(refused) => Err(refused.clone().into()),
            None => self.route(&headers, init_reply_to),
        };
        let route = match route {
            Ok(route) => route,
            Err(refused) => return self.refuse(&delivery, &headers, &decoded, refused).await,
        };
        let inbound = match decoded {
            Ok(inbound) => inbound,
            Err(error) => {
                return self
                    .refuse_unservable(&delivery, &headers, &route, error)
                    .await;
            }
        };
        match inbound.message {
            ClientJsonRpcMessage::Request(request) => {
                // Only a request needs its body's digest (its identity).
                let body = inflight::body_digest(&message.body);
                // Boxed: a request's future is several kilobytes, and the
                // task running this one is moved whole when it is spawned
                // and again when it finishes.
                Box::pin(self.handle_request(delivery, received, headers, route, request, body))
                    .await
            }
            ClientJsonRpcMessage::Notification(notification) => {
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                {
                    self.cancel(&route, id);
                }
                self.ack(&delivery).await;
            }
            ClientJsonRpcMessage::Response(_) | ClientJsonRpcMessage::Error(_) => {
                tracing::warn!(
                    origin = %clip(route.short_origin()),
                    "dropping a client response: server-to-client requests are not supported over queues"
                );
                self.ack(&delivery).await;
            }
        }
    }
}

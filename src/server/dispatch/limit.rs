//! The tool limits' step on the request path (see
//! [`limits`](crate::server::limits)): a `tools/call` over a limit is put
//! back in the queue, or answered with an error once it has waited too
//! long; one within its limits runs holding a permit.

use std::time::SystemTime;

use rmcp::model::{ClientRequest, JsonRpcRequest};
use serde_json::json;
use tokio::time::Instant;

use super::Shared;
use super::route::{Route, reply_headers};
use crate::queue::Delivery;
use crate::server::ServiceFactory;
use crate::server::clip::clip;
use crate::server::limits::{Call, Decision, LIMIT_WAIT_EXCEEDED};
use crate::wire::Headers;

/// What the limits made of a request.
pub(super) enum Gated {
    /// Run it, holding the permit (if any limit applies) until it ends.
    Run(Option<crate::server::limits::gate::Permit>),
    /// Put back or answered: nothing more to do.
    Settled,
}

/// Where a held request's error goes.
pub(super) struct Answer<'a> {
    pub(super) reply_to: &'a str,
    pub(super) headers: &'a Headers,
    pub(super) request_id: &'a str,
}

impl<F: ServiceFactory> Shared<F> {
    /// Applies the tool limits to `request`. When it runs, the deferrals
    /// this replica made of it are taken off `delivery`'s receive count, so
    /// they never make it poison.
    pub(super) async fn gate(
        &self,
        delivery: &mut Delivery,
        route: &Route,
        request: &JsonRpcRequest<ClientRequest>,
        answer: Answer<'_>,
    ) -> Gated {
        let (Some(gate), ClientRequest::CallToolRequest(call)) = (&self.gate, &request.request)
        else {
            return Gated::Run(None);
        };
        let tool = call.params.name.as_ref();
        let decision = gate.admit(
            Call {
                tool,
                caller: &route.origin,
                message_id: &delivery.message_id,
                sent_at: delivery.sent_at,
            },
            Instant::now(),
            SystemTime::now(),
        );
        match decision {
            Decision::Run(permit) => {
                let deferrals = gate.deferrals(&delivery.message_id);
                if deferrals > 0 {
                    delivery.receive_count =
                        delivery.receive_count.saturating_sub(deferrals).max(1);
                    tracing::info!(tool = %clip(tool), deferrals, "tool call within its limits after waiting in the queue");
                }
                Gated::Run(Some(permit))
            }
            Decision::Defer { delay, limit } => {
                tracing::info!(tool = %clip(tool), %limit, delay_secs = delay.as_secs(), "tool call over a limit; put back in the queue");
                // Never past the ceiling on a delivery's visibility (12 h on
                // SQS; lower only in tests).
                let delay = delay.min(self.config.visibility_ceiling);
                if let Err(error) = self.inbox.extend(&delivery.receipt, delay).await {
                    tracing::warn!(%error, "could not put the call back; it reappears after its visibility timeout");
                }
                Gated::Settled
            }
            Decision::GiveUp { waited, limit } => {
                let message = format!("{limit}; waited {} s", waited.as_secs());
                tracing::warn!(tool = %clip(tool), %message, "tool call waited past the maximum for its limits; answered with an error");
                let error = json!({
                    "jsonrpc": "2.0",
                    "id": request.id,
                    "error": {
                        "code": LIMIT_WAIT_EXCEEDED.0,
                        "message": message,
                        "data": {
                            "tool": tool,
                            "limit": limit.to_string(),
                            "waitedSeconds": waited.as_secs(),
                        },
                    },
                });
                let mut reply = self
                    .reply(answer.reply_to.to_owned(), reply_headers(answer.headers))
                    .numbered(answer.request_id.to_owned());
                let sent = reply.send_value(&error).await;
                self.settle_answered(delivery, sent).await;
                Gated::Settled
            }
        }
    }
}

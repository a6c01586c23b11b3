//! The request path: a request delivery from its route to its settling.
//!
//! A request is registered as running under its [`RequestKey`]; a duplicate
//! of a running one is held hidden until that run ends, and one of an
//! answered one is answered from the replay cache. Then a `tools/call` over
//! a tool limit is put back in the queue (`limit.rs`). Only then is a request
//! over its delivery count dead-lettered (a request that is running or
//! answered is not poison, however often it came); the rest run through a
//! fresh service (`server/request.rs`), or, with a task store, as a task
//! (`server/task/`), and the outcome decides how the delivery is settled
//! (`settle.rs`).

use std::sync::Arc;

use rmcp::model::{ClientRequest, JsonRpcRequest, RequestId};
use tokio::time::Instant;
use tracing::Instrument;

use super::Shared;
use super::limit::{Answer, Gated};
use super::route::{Route, reply_headers};
use super::version::peer_info;
use crate::queue::Delivery;
use crate::server::ServiceFactory;
use crate::server::clip::clip;
use crate::server::dead_letter;
use crate::server::heartbeat::Heartbeat;
use crate::server::inflight::RequestKey;
use crate::server::request::{self, Outcome};
use crate::server::task::{self, TaskBusiness, TaskCall};
use crate::wire::session::SessionState;
use crate::wire::{self, Headers};

impl<F: ServiceFactory> Shared<F> {
    /// Serves one request delivery to the end and settles it.
    pub(super) async fn handle_request(
        self: Arc<Self>,
        mut delivery: Delivery,
        received: Instant,
        headers: Headers,
        route: Route,
        request: JsonRpcRequest<ClientRequest>,
        body: [u8; 16],
    ) {
        let request_id = wire::request_id_text(&request.id);
        // Fields are only evaluated when the span is enabled.
        let span = tracing::info_span!(
            "mcp_request",
            request_id = %clip(&request_id),
            method = %clip(request.request.method()),
            session = %clip(route.short_origin()),
        );
        async move {
            let caller = match route.caller(&request.id) {
                Ok(caller) => caller,
                Err(reason) => {
                    // Not clipped: the address in it is cut and escaped
                    // already (policy.rs), and clipping the whole would cut
                    // off why it was refused and which setting allows it.
                    tracing::warn!(%reason, "request dropped: no usable reply address");
                    self.ack(&delivery).await;
                    return;
                }
            };
            let reply_to = caller.reply_to.clone();
            let key = RequestKey { caller, body };
            let registration = loop {
                match self.inflight.register(key.clone()) {
                    Some(registration) => break registration,
                    // The same request is running here: this is a
                    // redelivery, or the caller sent it again. Hidden until
                    // the first run ends, then answered from replay below.
                    None => {
                        tracing::info!("duplicate of a running request; held until it ends");
                        if !self.hold_duplicate(&delivery, received, &key).await {
                            return;
                        }
                    }
                }
            };
            // Looked up once registered: a run keeps its response before it
            // unregisters, so a duplicate finds it running or answered.
            let id = request.id.clone();
            if let Some((response, dead_lettered)) =
                self.replay.get(&key, Instant::now()).and_then(|replay| {
                    let response = serde_json::from_str::<serde_json::Value>(&replay.body).ok()?;
                    Some((response, replay.dead_lettered))
                })
            {
                tracing::info!("duplicate of an answered request; replaying its response");
                let letter = dead_letter::Request {
                    delivery: &delivery,
                    key: &key,
                    id: &id,
                    reply_to: &reply_to,
                    headers: &headers,
                };
                let mut reply = self
                    .reply(reply_to.clone(), reply_headers(&headers))
                    .numbered(request_id.clone());
                let sent = reply.send_value(&response).await;
                Box::pin(self.settle_replayed(letter, sent, dead_lettered)).await;
                drop(registration);
                return;
            }
            // The tool limits: a call over one goes back to the queue (its
            // registration dropped at once, freeing its slot); replays above
            // cost the downstream nothing, so are never limited.
            let answer = Answer {
                reply_to: &reply_to,
                headers: &headers,
                request_id: &request_id,
            };
            let permit = match self.gate(&mut delivery, &route, &request, answer).await {
                Gated::Run(permit) => permit,
                Gated::Settled => {
                    drop(registration);
                    return;
                }
            };
            let letter = dead_letter::Request {
                delivery: &delivery,
                key: &key,
                id: &id,
                reply_to: &reply_to,
                headers: &headers,
            };
            // Checked only now: a delivery of a request that is running or
            // answered is not poison, however often it came.
            if let Some(limit) = &self.config.dead_letter
                && delivery.receive_count > limit.max_receive_count
            {
                let reason = format!(
                    "delivered {} times; no earlier attempt ended with an answer (the server stopped, or the reply could not be sent)",
                    delivery.receive_count
                );
                // A task whose runs all ended without an outcome (its
                // replicas died) fails, saying why, so its caller stops
                // polling.
                if let Some(settings) = &self.config.tasks
                    && matches!(task::classify(&request, settings), TaskBusiness::Call)
                {
                    task::fail_dead_lettered(settings, &route.origin, &request.id, &body, &reason)
                        .await;
                }
                // Boxed, as a rare path: inline, its state would enlarge the
                // future of every delivery. Registered until it is settled,
                // so that a duplicate waits and then finds the notice kept.
                Box::pin(self.dead_letter(letter, &reason)).await;
                drop(registration);
                return;
            }
            let is_initialize = matches!(request.request, ClientRequest::InitializeRequest(_));
            let peer_info = (!is_initialize).then(|| peer_info(&request, route.session.as_ref()));
            if let Some(settings) = &self.config.tasks {
                let business = task::classify(&request, settings);
                if !matches!(business, TaskBusiness::None) {
                    let reply = self
                        .reply(reply_to.clone(), reply_headers(&headers))
                        .numbered(request_id.clone());
                    let owner = route.origin.as_str();
                    let mut finished = if matches!(business, TaskBusiness::Method) {
                        self.answer_task_method(settings, reply, owner, &request)
                            .await
                    } else {
                        let reply = if self.config.replay_window.is_zero() {
                            reply
                        } else {
                            reply.keeping_final()
                        };
                        // Status changes go where the call's replies go,
                        // when the caller asked for them.
                        let notify = task::wants_notifications(&request).then(|| {
                            self.reply(reply_to.clone(), reply_headers(&headers))
                        });
                        let call = TaskCall {
                            settings,
                            owner,
                            body,
                            reply,
                            notify,
                            peer_info,
                            inbox: self.inbox.clone(),
                            receipt: delivery.receipt.clone(),
                            received,
                            cancelled: registration.token().clone(),
                        };
                        Box::pin(self.run_task(request, call)).await
                    };
                    drop(permit);
                    if matches!(finished.outcome, Outcome::Answered | Outcome::ReplyFailed)
                        && let Some(response) = finished.response.take()
                    {
                        self.replay.keep(key.clone(), response, Instant::now());
                    }
                    drop(registration);
                    self.settle_run(finished, letter).await;
                    return;
                }
            }
            let mut reply = self
                .reply(reply_to.clone(), reply_headers(&headers))
                .numbered(request_id.clone());
            if self.config.tasks.is_some() {
                reply = reply.advertising_tasks();
            }
            // An initialize is not kept for replay: its reply carries the
            // new session id in an attribute, and running it again only
            // issues another.
            if !is_initialize && !self.config.replay_window.is_zero() {
                reply = reply.keeping_final();
            }
            if is_initialize {
                reply.seal_session_with(
                    self.config.session_keys.clone(),
                    SessionState {
                        reply_to: reply_to.clone(),
                        protocol_version: String::new(),
                        client_id: headers.client_id.clone(),
                    },
                );
            }
            let mut finished = request::run(
                self.factory.make(),
                request,
                peer_info,
                request::Run {
                    reply,
                    inbox: self.inbox.clone(),
                    receipt: delivery.receipt.clone(),
                    received,
                    visibility_ceiling: self.config.visibility_ceiling,
                    timeout: self.config.request_timeout,
                    cancelled: registration.token().clone(),
                    abandon: self.abandon.clone(),
                },
            )
            .await;
            drop(permit);
            // Kept before the registration goes, so that a duplicate finds
            // the request either running or answered, never neither. A
            // response that could not be sent is kept too: the redelivery
            // replays it instead of running the handler again.
            if matches!(finished.outcome, Outcome::Answered | Outcome::ReplyFailed)
                && let Some(response) = finished.response.take()
            {
                self.replay.keep(key.clone(), response, Instant::now());
            }
            drop(registration);
            self.settle_run(finished, letter).await;
        }
        .instrument(span)
        .await
    }

    /// Holds a duplicate of a request that is running here hidden (its own
    /// heartbeat, bounded like the run's) until that run ends. Returns false
    /// when shutdown ran out of grace first; the duplicate is then released
    /// for another replica.
    async fn hold_duplicate(
        &self,
        delivery: &Delivery,
        received: Instant,
        key: &RequestKey,
    ) -> bool {
        let heartbeat = Heartbeat::new(
            self.inbox.clone(),
            delivery.receipt.clone(),
            received,
            self.config.visibility_ceiling,
        );
        let keep_hidden = heartbeat.keep_hidden();
        tokio::pin!(keep_hidden);
        loop {
            // Armed before the check, so an end between the two is not missed.
            let ended = self.inflight.ended();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.inflight.is_running(key) {
                return true;
            }
            tokio::select! {
                () = ended => {}
                () = &mut keep_hidden => {}
                () = self.abandon.cancelled() => {
                    if let Err(error) = self.inbox.release(&delivery.receipt).await {
                        tracing::warn!(%error, "could not release a held duplicate");
                    }
                    return false;
                }
            }
        }
    }

    /// Cancels the running request `id` of the caller `route` names: only
    /// the caller's own requests, at the address it named, so a cancel
    /// cannot reach another caller's call.
    pub(super) fn cancel(&self, route: &Route, id: &RequestId) {
        let found = route
            .caller(id)
            .is_ok_and(|caller| self.inflight.cancel(&caller));
        tracing::info!(request_id = %clip(&wire::request_id_text(id)), origin = %clip(route.short_origin()), found, "cancel requested");
    }
}

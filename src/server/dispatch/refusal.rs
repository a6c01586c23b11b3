//! Why a message is refused or cannot be answered ([`Refused`]), and how a
//! refused message is answered and settled.
//!
//! A message refused by an inbox layer (its signature or age does not
//! verify), or whose session id does not verify, is
//! *distrusted*: it is answered only where it names directly, unsigned and
//! uncorrelated ([`Shared::refuse`]). A message that is trusted but whose
//! body cannot be served is answered like any request, with its own id
//! ([`Shared::refuse_unservable`]). Either way the error reply is settled by
//! the late-ack rule of error replies (`settle.rs`).

use rmcp::model::{ClientJsonRpcMessage, ErrorCode, RequestId};
use serde_json::Value;

use super::Shared;
use super::route::{Route, reply_headers};
use crate::queue::Delivery;
use crate::server::ServiceFactory;
use crate::server::clip::clip;
use crate::server::policy;
use crate::server::request::Reply;
use crate::wire::session::SessionError;
use crate::wire::{self, Headers, Inbound, WireError};

/// Why a message is refused, or cannot be answered.
///
/// The texts are part of the wire: a distrusted message's error reply
/// carries them.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    /// An inbox layer refused it: its signature does not verify, it has
    /// none where one is required, or it is signed but not fresh (see
    /// [`VerifyLayer`](crate::queue::layer::VerifyLayer)).
    #[error(transparent)]
    Layer(#[from] crate::queue::Refused),
    /// The session id it presents does not verify.
    #[error("invalid session id: {0}")]
    Session(#[source] SessionError),
    /// Its reply address is missing or refused by the reply policy: there
    /// is nowhere to answer it.
    #[error(transparent)]
    ReplyAddress(#[from] policy::Refusal),
    /// Its body is not a JSON-RPC message the server can serve.
    #[error(transparent)]
    Unservable(#[from] WireError),
}

impl Refused {
    /// The JSON-RPC error that answers a message refused for this reason;
    /// `id` is the id the message claims. `None` when there is nothing to
    /// answer with (no reply address).
    fn error_reply(&self, id: Option<&RequestId>) -> Option<Value> {
        match self {
            // Nothing a distrusted message claims is trusted, so its answer
            // is not correlated: its `id` is `null`. Otherwise anyone able
            // to send to the request queue could fail another client's call
            // by naming its id and reply queue. The refused id is only shown
            // in `error.data.requestId`, for people reading the queue.
            Refused::Layer(_) | Refused::Session(_) => {
                let mut error =
                    wire::error_reply(None, ErrorCode::INVALID_REQUEST, &self.to_string());
                if let Some(id) = id {
                    error["error"]["data"] = serde_json::json!({ "requestId": id });
                }
                Some(error)
            }
            Refused::Unservable(error) => {
                let text = match error {
                    WireError::NotJson(_) => "Parse error: body is not valid JSON",
                    _ => "Invalid request: not a valid JSON-RPC request",
                };
                Some(wire::error_reply(error.request_id(), error.code(), text))
            }
            Refused::ReplyAddress(_) => None,
        }
    }
}

impl<F: ServiceFactory> Shared<F> {
    /// Answers a distrusted message (its signature or session id does not
    /// verify) and settles it. The answer goes to the address the message
    /// names directly, if allowed, or to the shared reply address (see
    /// [`refused_reply_address`](Self::refused_reply_address)); it is **not
    /// signed** and carries none of the message's `ClientId`, `SessionId` or
    /// `RequestId`.
    pub(super) async fn refuse(
        &self,
        delivery: &Delivery,
        headers: &Headers,
        decoded: &Result<Inbound<ClientJsonRpcMessage>, WireError>,
        refused: Refused,
    ) {
        // A signature or session id that does not verify is forged, altered
        // or from another deployment: nothing the message claims can be
        // trusted.
        tracing::warn!(message_id = %delivery.message_id, reason = %refused, "refused message");
        let id = match decoded {
            Ok(Inbound {
                message: ClientJsonRpcMessage::Request(request),
                ..
            }) => Some(&request.id),
            Ok(_) => None,
            Err(error) => error.request_id(),
        };
        let sent = match (self.refused_reply_address(headers), refused.error_reply(id)) {
            (Some(reply_to), Some(error)) => {
                let mut reply =
                    Reply::new(self.unsigned_outbox.clone(), reply_to, Headers::default());
                reply.send_value(&error).await
            }
            _ => Ok(()),
        };
        self.settle_error_reply(delivery, sent).await;
    }

    /// Whether `refused` is only the offload layer's (its payload is gone,
    /// too large, or not ours to fetch) on a server that does not require
    /// signatures: then the message is as trusted as any unsigned one, and
    /// its caller is answered with its own id. With signatures required the
    /// message cannot be verified without its body, so it is distrusted.
    #[cfg(feature = "offload")]
    pub(super) fn payload_refusal_is_trusted(&self, refused: &crate::queue::Refused) -> bool {
        refused
            .downcast_ref::<crate::queue::layer::PayloadRefused>()
            .is_some()
            && !self
                .config
                .signing
                .as_ref()
                .is_some_and(|signing| signing.required)
    }

    /// Answers a message whose offloaded payload was refused (see
    /// [`payload_refusal_is_trusted`](Self::payload_refusal_is_trusted))
    /// with an error naming the object, correlated by its `RequestId`
    /// attribute, at its reply address, and settles it.
    #[cfg(feature = "offload")]
    pub(super) async fn refuse_payload(
        &self,
        delivery: &Delivery,
        headers: &Headers,
        route: &Route,
        refused: &crate::queue::Refused,
    ) {
        tracing::warn!(message_id = %delivery.message_id, request_id = %clip(headers.request_id.as_deref().unwrap_or_default()), origin = %clip(route.short_origin()), reason = %refused, "request payload refused");
        let id = headers
            .request_id
            .as_deref()
            .map(wire::request_id_from_text);
        let error = wire::error_reply(
            id.as_ref(),
            ErrorCode::INVALID_REQUEST,
            &refused.to_string(),
        );
        let sent = match &route.reply_to {
            Ok(reply_to) => {
                let mut reply = self.reply(reply_to.clone(), reply_headers(headers));
                reply.send_value(&error).await
            }
            Err(reason) => {
                tracing::warn!(message_id = %delivery.message_id, %reason, "cannot answer: no usable reply address");
                Ok(())
            }
        };
        self.settle_error_reply(delivery, sent).await;
    }

    /// Answers a trusted message whose body cannot be served (not JSON, not
    /// JSON-RPC) with an error carrying its id when one could be read, at
    /// its reply address, and settles it.
    pub(super) async fn refuse_unservable(
        &self,
        delivery: &Delivery,
        headers: &Headers,
        route: &Route,
        error: WireError,
    ) {
        let refused = Refused::Unservable(error);
        tracing::warn!(message_id = %delivery.message_id, origin = %clip(route.short_origin()), error = %clip(&refused.to_string()), "unservable message");
        let sent = match (&route.reply_to, refused.error_reply(None)) {
            (Ok(reply_to), Some(error)) => {
                let mut reply = self.reply(reply_to.clone(), reply_headers(headers));
                reply.send_value(&error).await
            }
            (Err(reason), _) => {
                // Not clipped: see the same warning in serve.rs.
                tracing::warn!(message_id = %delivery.message_id, %reason, "cannot answer: no usable reply address");
                Ok(())
            }
            (Ok(_), None) => Ok(()),
        };
        self.settle_error_reply(delivery, sent).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::layer::SignatureRefused;
    use crate::wire::signing::{SigningError, StaleMessage};

    #[test]
    fn the_texts_are_those_on_the_wire() {
        let cases = [
            (
                Refused::Layer(crate::queue::Refused::new(SignatureRefused::Signature(
                    SigningError::Mismatch,
                ))),
                "message signature refused: message signature does not verify",
            ),
            (
                Refused::Layer(crate::queue::Refused::new(SignatureRefused::Stale(
                    StaleMessage::NoTimestamp,
                ))),
                "message refused: signed message has no readable Timestamp",
            ),
            (
                Refused::Session(SessionError::Malformed),
                "invalid session id: malformed session id",
            ),
            (
                Refused::ReplyAddress(policy::Refusal::Missing),
                "the request names no reply address",
            ),
            (
                Refused::Unservable(WireError::NotJson("eof".to_owned())),
                "body is not valid JSON: eof",
            ),
        ];
        for (refused, text) in cases {
            assert_eq!(refused.to_string(), text);
        }
    }

    #[test]
    fn a_distrusted_message_is_answered_uncorrelated_and_an_unservable_one_with_its_id() {
        let claimed = RequestId::Number(7);
        let error = Refused::Session(SessionError::BadSignature)
            .error_reply(Some(&claimed))
            .expect("an answer");
        assert_eq!(error["id"], Value::Null);
        assert_eq!(error["error"]["code"], -32600);
        assert_eq!(error["error"]["data"]["requestId"], 7);
        assert_eq!(
            error["error"]["message"],
            "invalid session id: session id signature does not verify"
        );

        let unservable = Refused::Unservable(WireError::NotJsonRpc {
            id: Some(RequestId::Number(8)),
            reason: "no method".to_owned(),
        });
        let error = unservable.error_reply(None).expect("an answer");
        assert_eq!(error["id"], 8);
        assert_eq!(error["error"]["code"], -32600);
        assert_eq!(
            error["error"]["message"],
            "Invalid request: not a valid JSON-RPC request"
        );
        let error = Refused::Unservable(WireError::NotJson("eof".to_owned()))
            .error_reply(None)
            .expect("an answer");
        assert_eq!(error["id"], Value::Null);
        assert_eq!(error["error"]["code"], -32700);
        assert_eq!(
            error["error"]["message"],
            "Parse error: body is not valid JSON"
        );

        assert!(
            Refused::ReplyAddress(policy::Refusal::Missing)
                .error_reply(None)
                .is_none()
        );
    }
}

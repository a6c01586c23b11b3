//! Where a message's replies go, the session it presents, and who sent it.
//!
//! A reply address is taken from the `ReplyTo` attribute, else the
//! parameters of an `initialize`, else the sealed session id; it is checked
//! against the [`ReplyPolicy`](crate::server::ReplyPolicy) unless the
//! operator set a shared reply address, which every reply goes to.

use rmcp::model::RequestId;

use super::Shared;
use super::refusal::Refused;
use crate::server::ServiceFactory;
use crate::server::inflight::Caller;
use crate::server::request::Reply;
use crate::wire::session::SessionState;
use crate::wire::{self, Detail, Headers};

/// Where a message came from and where its replies go.
pub(super) struct Route {
    /// The session the message presented and that verified.
    pub(super) session: Option<SessionState>,
    /// The checked reply address, or why there is none.
    pub(super) reply_to: Result<String, Refused>,
    /// Identifies the sender for cancellation and logs.
    pub(super) origin: String,
}

impl Route {
    /// Who sent request `id`, at the address its replies go to; `Err` says
    /// why the request cannot be answered.
    pub(super) fn caller(&self, id: &RequestId) -> Result<Caller, &Refused> {
        let reply_to = self.reply_to.as_ref()?;
        Ok(Caller {
            origin: self.origin.clone(),
            reply_to: reply_to.clone(),
            request_id: wire::request_id_text(id),
        })
    }

    /// The origin as logs show it: a session id is long, and its nonce is
    /// enough to correlate logs.
    pub(super) fn short_origin(&self) -> &str {
        let origin = &self.origin;
        match origin.split('.').nth(1) {
            Some(nonce) if origin.starts_with("v1.") => nonce,
            _ => origin,
        }
    }
}

impl<F: ServiceFactory> Shared<F> {
    /// Works out and checks where replies go. `Err` means the message must
    /// not be trusted at all (its session id does not verify).
    pub(super) fn route(
        &self,
        headers: &Headers,
        init_reply_to: Option<String>,
    ) -> Result<Route, Refused> {
        let session = match headers.session_id.as_deref() {
            Some(id) if init_reply_to.is_none() => Some(
                self.config
                    .session_keys
                    .open(id)
                    .map_err(Refused::Session)?,
            ),
            // On initialize, a session id the client chose is replaced by ours.
            _ => None,
        };
        let claimed = headers
            .reply_to
            .clone()
            .or(init_reply_to)
            .or_else(|| session.as_ref().map(|s| s.reply_to.clone()));
        let reply_to = match &self.config.shared_reply_address {
            // Set by the operator: trusted, and the same for every request.
            Some(shared) => Ok(shared.clone()),
            None => self
                .config
                .reply_policy
                .check(claimed.as_deref())
                .map_err(Refused::ReplyAddress),
        };
        let origin = headers
            .session_id
            .clone()
            .or_else(|| headers.client_id.clone())
            .or_else(|| claimed.clone())
            .unwrap_or_default();
        Ok(Route {
            session,
            reply_to,
            origin,
        })
    }

    /// Where to answer a message that is refused outright: the address it
    /// names directly (`ReplyTo`) if allowed, or the shared reply address;
    /// never an address from a session, which the refused message may not
    /// own. `None` when there is nowhere to answer.
    pub(super) fn refused_reply_address(&self, headers: &Headers) -> Option<String> {
        match &self.config.shared_reply_address {
            Some(shared) => Some(shared.clone()),
            None => self
                .config
                .reply_policy
                .check(headers.reply_to.as_deref())
                .ok(),
        }
    }

    /// A reply to `address`, signed when the server signs, with the
    /// attributes [`ServerConfig::attribute_detail`] says.
    ///
    /// [`ServerConfig::attribute_detail`]: crate::server::ServerConfig::attribute_detail
    pub(in crate::server) fn reply(&self, address: String, mut headers: Headers) -> Reply {
        // A webhook's attributes become headers, which cost nothing to
        // speak of, and Python asyncmcp's webhook client reads them.
        let webhook = !crate::queue::is_queue_url(&address)
            && (address.starts_with("https://") || address.starts_with("http://"));
        if self.config.attribute_detail == Detail::Full || webhook {
            headers.detail = Detail::Full;
        }
        Reply::new(self.outbox.clone(), address, headers)
    }
}

/// The attributes replies to `request` carry: its session and client ids,
/// in [lean detail](Detail::Lean) when it came from an asyncmcp client
/// (which names its reply address in `ReplyTo`; a forged one only changes
/// the attributes of replies to that address).
pub(in crate::server) fn reply_headers(request: &Headers) -> Headers {
    Headers {
        detail: if request.reply_to.is_some() {
            Detail::Lean
        } else {
            Detail::Full
        },
        session_id: request.session_id.clone(),
        client_id: request.client_id.clone(),
        ..Headers::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::policy;

    fn route(origin: &str, reply_to: Result<String, Refused>) -> Route {
        Route {
            session: None,
            reply_to,
            origin: origin.to_owned(),
        }
    }

    #[test]
    fn logs_show_a_session_by_its_nonce_and_any_other_origin_whole() {
        let sealed = route("v1.nonce123.cGF5bG9hZA.tag", Ok(String::new()));
        assert_eq!(sealed.short_origin(), "nonce123");
        let client = route("client.with.dots", Ok(String::new()));
        assert_eq!(client.short_origin(), "client.with.dots");
    }

    #[test]
    fn a_caller_needs_a_reply_address() {
        let id = RequestId::Number(3);
        let answered = route("client", Ok("memory://replies".to_owned()));
        let caller = answered.caller(&id).expect("a caller");
        assert_eq!(
            (
                caller.origin.as_str(),
                caller.reply_to.as_str(),
                caller.request_id.as_str()
            ),
            ("client", "memory://replies", "3")
        );
        let unanswerable = route(
            "client",
            Err(Refused::ReplyAddress(policy::Refusal::Missing)),
        );
        assert!(matches!(
            unanswerable.caller(&id),
            Err(Refused::ReplyAddress(policy::Refusal::Missing))
        ));
    }
}

//! The requests running on this process, so that a duplicate of one is
//! recognised and `notifications/cancelled` can reach it.
//!
//! # What makes two deliveries "the same request"
//!
//! A JSON-RPC id is only unique per connection, and nothing a sender puts
//! in an attribute can be trusted on its own: clients built from one config
//! share a `ClientId`, stateless rmcp clients number every connection's
//! requests from 0, and anyone who can send to the request queue can copy a
//! victim's `ClientId` or `SessionId` (every reply shows them). So a request
//! is identified by its [`Caller`] (origin, checked reply address, JSON-RPC
//! id) **and a digest of its body**: the same message redelivered, or the
//! same caller re-sending the same request to the same address, has the same
//! [`RequestKey`]; another caller reusing the id, a different request under
//! the same id, or a copy naming another reply address does not. A replayed
//! answer therefore only ever goes where the original one went, in answer to
//! the very request it answered.
//!
//! A cancellation names only a caller and an id (that is all
//! `notifications/cancelled` carries), so it reaches the requests of that
//! caller, at that reply address, with that id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Who sent a request, as far as the server can tell, and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Caller {
    /// The session id, else the client id, else the reply address.
    pub(super) origin: String,
    /// The checked address replies go to.
    pub(super) reply_to: String,
    /// The JSON-RPC id, as text.
    pub(super) request_id: String,
}

/// Identifies one request: its caller and what it asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RequestKey {
    pub(super) caller: Caller,
    /// The first 128 bits of the SHA-256 of the request's body (out of any
    /// SNS envelope). A collision needs 2⁶⁴ bodies of one caller and id.
    pub(super) body: [u8; 16],
}

impl RequestKey {
    /// The key of the request `body` sent by `caller`.
    #[cfg(test)]
    pub(super) fn new(caller: Caller, body: &str) -> Self {
        Self {
            caller,
            body: body_digest(body),
        }
    }
}

/// What [`RequestKey::body`] keeps of a body.
pub(super) fn body_digest(body: &str) -> [u8; 16] {
    let digest = Sha256::digest(body.as_bytes());
    let mut truncated = [0; 16];
    truncated.copy_from_slice(&digest[..16]);
    truncated
}

/// A request running for a caller: its body digest and cancellation token.
type Running = ([u8; 16], CancellationToken);

/// The registry of one server.
#[derive(Default)]
pub(super) struct InFlight {
    /// Per caller and id, the bodies running with their cancellation tokens.
    /// Almost always one; several only when a caller reuses an id.
    running: Mutex<HashMap<Caller, Vec<Running>>>,
    /// Notified whenever a request ends, for duplicates held until then.
    ended: Notify,
}

/// Removes its request from the registry when dropped.
pub(super) struct Registration {
    registry: Arc<InFlight>,
    key: RequestKey,
    token: CancellationToken,
}

impl Registration {
    /// Cancelled when the client cancels the request.
    pub(super) fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self
            .registry
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(bodies) = running.get_mut(&self.key.caller) {
            bodies.retain(|(body, _)| *body != self.key.body);
            if bodies.is_empty() {
                running.remove(&self.key.caller);
            }
        }
        drop(running);
        self.registry.ended.notify_waiters();
    }
}

impl InFlight {
    /// Registers a request; `None` when the same request is already running
    /// here (a duplicate delivery).
    pub(super) fn register(self: &Arc<Self>, key: RequestKey) -> Option<Registration> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let bodies = running.entry(key.caller.clone()).or_default();
        if bodies.iter().any(|(body, _)| *body == key.body) {
            return None;
        }
        let token = CancellationToken::new();
        bodies.push((key.body, token.clone()));
        Some(Registration {
            registry: self.clone(),
            key,
            token,
        })
    }

    /// Completes when a request ends after this call (see
    /// [`Notify::notified`]: enable it before checking
    /// [`is_running`](Self::is_running)).
    pub(super) fn ended(&self) -> tokio::sync::futures::Notified<'_> {
        self.ended.notified()
    }

    /// Whether the same request is running here.
    pub(super) fn is_running(&self, key: &RequestKey) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .get(&key.caller)
            .is_some_and(|bodies| bodies.iter().any(|(body, _)| *body == key.body))
    }

    /// Cancels the requests of `caller` running here; false when there are
    /// none.
    pub(super) fn cancel(&self, caller: &Caller) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get(caller) {
            Some(bodies) => {
                for (_, token) in bodies {
                    token.cancel();
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(origin: &str, reply_to: &str, id: &str) -> Caller {
        Caller {
            origin: origin.into(),
            reply_to: reply_to.into(),
            request_id: id.into(),
        }
    }

    fn key(id: &str, body: &str) -> RequestKey {
        RequestKey::new(caller("session", "memory://replies", id), body)
    }

    #[test]
    fn cancel_reaches_the_registered_request_and_drop_unregisters() {
        let registry = Arc::new(InFlight::default());
        let registration = registry.register(key("1", "a")).unwrap();
        assert!(
            registry.register(key("1", "a")).is_none(),
            "duplicate refused"
        );
        assert!(registry.is_running(&key("1", "a")));
        assert!(!registry.cancel(&key("2", "a").caller));
        assert!(registry.cancel(&key("1", "a").caller));
        assert!(registration.token().is_cancelled());
        drop(registration);
        assert!(!registry.is_running(&key("1", "a")));
        assert!(!registry.cancel(&key("1", "a").caller));
        assert!(registry.register(key("1", "a")).is_some());
    }

    #[test]
    fn another_body_reply_address_or_origin_is_another_request() {
        let registry = Arc::new(InFlight::default());
        let _first = registry.register(key("1", "a")).unwrap();
        let _other_body = registry
            .register(key("1", "b"))
            .expect("same caller and id, another request");
        let _other_address = registry
            .register(RequestKey::new(
                caller("session", "memory://elsewhere", "1"),
                "a",
            ))
            .expect("another reply address");
        let _other_origin = registry
            .register(RequestKey::new(
                caller("other", "memory://replies", "1"),
                "a",
            ))
            .expect("another origin");
        // A cancel reaches every request of its caller and id, and no other.
        assert!(registry.cancel(&key("1", "a").caller));
        assert!(_first.token().is_cancelled() && _other_body.token().is_cancelled());
        assert!(!_other_address.token().is_cancelled());
        assert!(!_other_origin.token().is_cancelled());
    }
}

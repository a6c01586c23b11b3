//! The requests running on this process, so `notifications/cancelled` can
//! reach them.
//!
//! A request is keyed by its origin (session id, else client id, else reply
//! address) and its JSON-RPC id: ids are only unique per client. A
//! cancellation that lands on another replica finds nothing here; the
//! request then runs to completion and the client discards the late result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Identifies one request across the processes of a deployment.
pub(super) type RequestKey = (String, String);

#[derive(Default)]
pub(super) struct InFlight {
    running: Mutex<HashMap<RequestKey, CancellationToken>>,
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
        running.remove(&self.key);
    }
}

impl InFlight {
    /// Registers a request; `None` when the same request is already running
    /// here (a duplicate delivery).
    pub(super) fn register(self: &Arc<Self>, key: RequestKey) -> Option<Registration> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(&key) {
            return None;
        }
        let token = CancellationToken::new();
        running.insert(key.clone(), token.clone());
        Some(Registration {
            registry: self.clone(),
            key,
            token,
        })
    }

    /// Cancels a running request; false when it is not running here.
    pub(super) fn cancel(&self, key: &RequestKey) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get(key) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> RequestKey {
        ("session".into(), id.into())
    }

    #[test]
    fn cancel_reaches_the_registered_request_and_drop_unregisters() {
        let registry = Arc::new(InFlight::default());
        let registration = registry.register(key("1")).unwrap();
        assert!(registry.register(key("1")).is_none(), "duplicate refused");
        assert!(!registry.cancel(&key("2")));
        assert!(registry.cancel(&key("1")));
        assert!(registration.token().is_cancelled());
        drop(registration);
        assert!(!registry.cancel(&key("1")));
        assert!(registry.register(key("1")).is_some());
    }
}

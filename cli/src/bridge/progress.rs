//! Routes from a downstream request's progress token back to its caller.
//!
//! rmcp sets a fresh progress token (unique per connection) on every request
//! it sends, so the caller's own token cannot travel downstream: the route
//! maps the downstream token to the caller's peer and token. A route is
//! added while holding the [`sending`](ProgressRoutes::sending) lock across
//! the send, and progress is looked up under the same lock: a notification
//! the downstream server sends at once cannot overtake its route.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};

/// Where a downstream request's progress goes.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The caller.
    pub(crate) peer: Peer<RoleServer>,
    /// The caller's progress token.
    pub(crate) token: ProgressToken,
}

/// The routes of one downstream connection.
#[derive(Debug, Default)]
pub(crate) struct ProgressRoutes {
    /// Held across a send and its route's insertion; see the module docs.
    pub(crate) sending: tokio::sync::Mutex<()>,
    routes: Mutex<HashMap<ProgressToken, Route>>,
}

impl ProgressRoutes {
    /// Routes `downstream`'s progress to `route`.
    pub(crate) fn insert(&self, downstream: ProgressToken, route: Route) {
        self.map().insert(downstream, route);
    }

    /// Forgets `downstream`'s route.
    pub(crate) fn remove(&self, downstream: &ProgressToken) {
        self.map().remove(downstream);
    }

    /// The caller and its own progress notification for a downstream one,
    /// if the request is still running.
    pub(crate) async fn route(
        &self,
        mut progress: ProgressNotificationParam,
    ) -> Option<(Peer<RoleServer>, ProgressNotificationParam)> {
        // Waits for a send in progress to have added its route.
        drop(self.sending.lock().await);
        let route = self.map().get(&progress.progress_token)?.clone();
        progress.progress_token = route.token;
        Some((route.peer, progress))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

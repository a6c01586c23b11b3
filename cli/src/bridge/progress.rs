//! Routes from a downstream request's progress token back to its caller,
//! and the accounting that lets a request's progress pass on before its
//! answer.
//!
//! rmcp sets a fresh progress token (unique per connection) on every request
//! it sends, so the caller's own token cannot travel downstream: the route
//! maps the downstream token to the caller's peer and token. A route is
//! added while holding the [`sending`](ProgressRoutes::sending) lock across
//! the send, and progress is looked up under the same lock: a notification
//! the downstream server sends at once cannot overtake its route.
//!
//! rmcp hands each notification to the handler on a task of its own, while
//! a response goes straight to the request that awaits it: the answer can
//! overtake the last progress notifications the server sent before it, which
//! the caller would then never see (it drops progress for a request that has
//! ended). So the downstream transport counts each progress notification as
//! it is received, in order with the responses ([`Observed`]), the handler
//! counts each one it has passed on (or dropped), and a request waits,
//! boundedly, for the two to meet ([`ProgressRoutes::settled`]) before it
//! answers its caller.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    ProgressNotificationParam, ProgressToken, ServerJsonRpcMessage, ServerNotification,
};
use rmcp::transport::Transport;
use rmcp::{Peer, RoleClient, RoleServer};
use tokio::sync::Notify;

/// The longest a request's answer waits for its progress to pass on: only
/// a caller too slow to take a notification makes it wait at all.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Where a downstream request's progress goes.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The caller.
    pub(crate) peer: Peer<RoleServer>,
    /// The caller's progress token.
    pub(crate) token: ProgressToken,
}

/// Progress notifications of one downstream token: received by the
/// transport, and handled (passed on or dropped) by the client handler.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    received: u64,
    handled: u64,
}

/// The routes of one downstream connection.
#[derive(Debug, Default)]
pub(crate) struct ProgressRoutes {
    /// Held across a send and its route's insertion; see the module docs.
    pub(crate) sending: tokio::sync::Mutex<()>,
    routes: Mutex<HashMap<ProgressToken, Route>>,
    counts: Mutex<HashMap<ProgressToken, Counts>>,
    /// Woken whenever a notification has been handled.
    handled: Notify,
}

impl ProgressRoutes {
    /// Routes `downstream`'s progress to `route`.
    pub(crate) fn insert(&self, downstream: ProgressToken, route: Route) {
        self.map().insert(downstream, route);
    }

    /// Forgets `downstream`'s route and counts.
    pub(crate) fn remove(&self, downstream: &ProgressToken) {
        self.map().remove(downstream);
        self.counts().remove(downstream);
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

    /// The transport received a progress notification for `downstream`.
    pub(crate) fn received(&self, downstream: &ProgressToken) {
        self.counts()
            .entry(downstream.clone())
            .or_default()
            .received += 1;
    }

    /// The handler is done with a progress notification for `downstream`.
    /// Counts of a token with no route (its request has ended) go once
    /// balanced, so stragglers leave nothing behind.
    pub(crate) fn handled(&self, downstream: &ProgressToken) {
        {
            let mut counts = self.counts();
            if let Some(count) = counts.get_mut(downstream) {
                count.handled += 1;
                if count.handled >= count.received && !self.map().contains_key(downstream) {
                    counts.remove(downstream);
                }
            }
        }
        self.handled.notify_waiters();
    }

    /// Waits until every progress notification received so far for
    /// `downstream` has been handled, for at most `within`; whether they
    /// were.
    pub(crate) async fn settled(&self, downstream: &ProgressToken, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.handled.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the two is kept.
            notified.as_mut().enable();
            let pending = self
                .counts()
                .get(downstream)
                .is_some_and(|count| count.handled < count.received);
            if !pending {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, Counts>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shown every message a downstream transport receives, in the order it
/// receives them ([`ProgressRoutes::observer`]).
pub(crate) type Observer = Arc<dyn Fn(&ServerJsonRpcMessage) + Send + Sync>;

impl ProgressRoutes {
    /// What counts each progress notification a transport receives: for
    /// [`Observed`], or a transport that calls it itself.
    pub(crate) fn observer(self: &Arc<Self>) -> Observer {
        let routes = self.clone();
        Arc::new(move |message: &ServerJsonRpcMessage| {
            if let ServerJsonRpcMessage::Notification(notification) = message
                && let ServerNotification::ProgressNotification(progress) =
                    &notification.notification
            {
                routes.received(&progress.params.progress_token);
            }
        })
    }
}

/// A downstream transport that shows each message it receives to an
/// [`Observer`]: in order with the responses, unlike the handler, which
/// rmcp runs on a task of its own.
pub(crate) struct Observed<T> {
    inner: T,
    observer: Observer,
}

impl<T> Observed<T> {
    /// `inner`, showing what it receives to `observer`.
    pub(crate) fn new(inner: T, observer: Observer) -> Self {
        Self { inner, observer }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Observed<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::model::ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.receive().await?;
        (self.observer)(&message);
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_what_was_received_to_be_handled() {
        let routes = Arc::new(ProgressRoutes::default());
        let token = ProgressToken(rmcp::model::NumberOrString::Number(1));
        assert!(routes.settled(&token, Duration::from_secs(1)).await);
        routes.received(&token);
        routes.received(&token);
        let waiting = tokio::spawn({
            let (routes, token) = (routes.clone(), token.clone());
            async move { routes.settled(&token, Duration::from_secs(60)).await }
        });
        routes.handled(&token);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one of two handled");
        routes.handled(&token);
        assert!(waiting.await.unwrap_or(false), "both handled");
        // A notification that is never handled holds a request only so long.
        routes.received(&token);
        assert!(!routes.settled(&token, Duration::from_millis(100)).await);
        routes.remove(&token);
        assert!(routes.counts().is_empty());
    }

    #[test]
    fn stragglers_after_the_route_is_gone_leave_nothing_behind() {
        let routes = ProgressRoutes::default();
        let token = ProgressToken(rmcp::model::NumberOrString::Number(2));
        routes.received(&token);
        routes.handled(&token);
        assert!(routes.counts().is_empty());
    }
}

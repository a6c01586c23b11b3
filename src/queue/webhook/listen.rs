//! Serving the webhook routes to the open internet: bounded connections,
//! bounded time.
//!
//! `axum::serve` is made for trusted fronts: it sets no timer, so hyper's
//! header read timeout never fires, and it takes every connection it is
//! offered. A webhook inbox or receiver faces whoever can reach its port,
//! and one client that opens connections and sends nothing (or a byte a
//! minute) would hold sockets, tasks and memory for ever. [`serve`] is the
//! same loop with the limits in [`HttpLimits`]:
//!
//! * at most `max_connections` at once: past it, new connections wait in the
//!   kernel's accept backlog (and are refused by it when that is full)
//!   rather than being taken;
//! * a request's head must arrive within `header_read_timeout`, and the
//!   whole exchange (body read, handling, answer) end within
//!   `request_timeout` (else `408`); a kept-alive connection idle for as
//!   long as a head may take is closed;
//! * on `stop`, no new connection is taken and those open finish their
//!   exchange and close (hyper's graceful shutdown).
//!
//! HTTP/1.1 only, as the webhook transports use; put TLS in front (a load
//! balancer or reverse proxy).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The limits [`serve`] keeps.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections served at once (default 1024).
    pub max_connections: usize,
    /// How long a request's head may take to arrive (default 10 s).
    pub header_read_timeout: Duration,
    /// How long a whole exchange may take, body and handling included
    /// (default 60 s: above the inbox's wait for an `initialize` reply).
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `stop` is
/// cancelled, then waits for the connections open to finish. Past
/// `max_connections`, new connections wait in the kernel's accept backlog;
/// a head slower than `header_read_timeout` ends its connection; an
/// exchange slower than `request_timeout` is answered 408. Accept errors (e.g. out of file descriptors) are
/// logged and retried after a pause, never fatal.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let request_timeout = limits.request_timeout;
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; trying again shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move {
                let request = request.map(Body::new);
                let answer = tokio::time::timeout(request_timeout, router.oneshot(request)).await;
                Ok::<_, Infallible>(match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(),
                })
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

/// The answer to an exchange that took longer than the request timeout.
fn timed_out() -> Response<Body> {
    (
        StatusCode::REQUEST_TIMEOUT,
        [(axum::http::header::CONNECTION, "close")],
        "request timed out",
    )
        .into_response()
}

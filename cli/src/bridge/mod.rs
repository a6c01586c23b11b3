//! Forwarding MCP between two connections: what `serve` and `proxy` share.
//!
//! ```text
//!  upstream (callers)            Forwarder              downstream (one server)
//!  a queue request, or   ──►  handle_request  ──►  Peer<RoleClient>: a child process
//!  a stdio / HTTP client  ◄──  progress, logs  ◄──  DownstreamClient (ClientHandler)
//! ```
//!
//! * [`Forwarder`] (`forward.rs`) is an rmcp server service. It answers the
//!   protocol's own requests (`initialize`, `server/discover`, `ping`) from
//!   the downstream server's `initialize` result, serves the first page of
//!   the list calls from a cache, and sends every other request downstream
//!   unchanged: tools, resources, prompts, completions, logging level, and
//!   methods it does not know.
//! * Progress (`progress.rs`): rmcp gives each downstream request a progress
//!   token of its own; the route from it back to the caller's peer and the
//!   caller's own token is kept while the request runs, and the request
//!   answers only once the progress that came before its answer has passed
//!   on (the downstream transport must be
//!   [observed](DownstreamClient::observe) for that).
//! * Cancellation: a caller's `notifications/cancelled` cancels the
//!   forwarded request, which sends `notifications/cancelled` downstream.
//! * [`DownstreamClient`] (`downstream.rs`) is the client side of the
//!   downstream connection: it routes progress, passes logs on, drops
//!   cached lists on `list_changed`, and refuses at once what the server
//!   asks of its client (sampling, roots, elicitation), which neither a
//!   queue nor this bridge can carry to the caller, so a tool that asks
//!   fails instead of hanging.
//! * A downstream that is gone mid-request: on a queue server the request
//!   is given back to the queue ([`asyncmcp::server::Redeliver`]), never
//!   answered with a result nobody computed; elsewhere the caller gets an
//!   error.

mod cache;
mod downstream;
mod forward;
mod progress;

pub(crate) use downstream::{Connection, DownstreamClient, LogSink};
pub(crate) use forward::{Downstream, Forwarder, Unavailable};
pub(crate) use progress::Observer;

//! Webhooks (feature `webhook`): replies POSTed to HTTPS endpoints.
//!
//! * [`WebhookOutbox`] (`outbox.rs`): an [`Outbox`](super::Outbox) POSTing
//!   each message to a webhook URL, with bounded retries and backoff,
//!   per-destination concurrency limits and a deadline per send. It
//!   composes like any outbox: in a [`RoutingOutbox`](super::RoutingOutbox)
//!   beside an SQS outbox, a server taking requests from SQS answers each
//!   caller at the queue or webhook URL it named.
//! * [`WebhookInbox`] (`inbox.rs`): an [`Inbox`](super::Inbox) fed by an
//!   axum route (default `POST|DELETE /mcp/request`), wire-compatible with
//!   Python asyncmcp 0.2.1's webhook server, bounded (`503` with
//!   `Retry-After` when full), optionally checking signatures.
//! * [`WebhookPolicy`] and [`GuardedResolver`] (`guard.rs`): the SSRF
//!   guard, an allow-list of URL prefixes and a check of every address
//!   connected to (no loopback, private, link-local or metadata addresses
//!   unless allowed; no redirects).
//! * [`WebhookSigner`] and [`WebhookVerifier`] (`signing.rs`): Standard
//!   Webhooks signatures, and their check by a receiver (unsigned, tampered,
//!   stale and duplicate deliveries refused).
//! * [`serve`] (`listen.rs`): serves the routes to the open internet with
//!   bounded connections, a header read timeout and a request timeout,
//!   which `axum::serve` does not keep.

mod guard;
pub mod inbox;
mod listen;
pub mod outbox;
pub mod signing;

pub use guard::{
    AddressClass, GuardError, GuardedResolver, Lookup, SystemLookup, WebhookPolicy, classify,
};
pub use inbox::{DEFAULT_CAPACITY, DEFAULT_PATH, SessionTap, WebhookInbox, WebhookInboxBuilder};
pub use listen::{HttpLimits, serve};
pub use outbox::{WebhookOutbox, WebhookOutboxBuilder};
pub use signing::{
    DEFAULT_REMEMBERED_IDS, DEFAULT_TOLERANCE, SecretError, VerifyError, WebhookSigner,
    WebhookVerifier,
};

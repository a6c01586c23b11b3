//! Layers: wrappers of an [`Inbox`](super::Inbox) or an
//! [`Outbox`](super::Outbox) that add one concern each, in the manner of
//! [tower](https://docs.rs/tower) layers.
//!
//! A layer is a [`tower_layer::Layer`] whose service is again an inbox or an
//! outbox, so layers stack in any order and a broker never knows it is
//! wrapped:
//!
//! | layer | wraps | does |
//! |---|---|---|
//! | [`UnwrapEnvelopeLayer`] | inbox | takes SNS notification envelopes off received messages |
//! | [`VerifyLayer`] | inbox | checks signatures (and their age), marking refused deliveries |
//! | [`SignLayer`] | outbox | signs every message sent |
//! | [`RetryLayer`] | outbox | retries sends that fail for a passing reason, until a deadline or a stop |
//! | `OffloadLayer` (feature `offload`) | both | moves bodies over the queue's limit to S3 and back (module `offload`) |
//!
//! The [server](crate::server) and [client](crate::client) builders apply
//! them from their settings (`signing`, `send_retry`) in a fixed order,
//! outermost first:
//!
//! ```text
//! inbox:  Verify ─► [your inbox layers] ─► UnwrapEnvelope ─► broker
//! outbox: Retry (client) ─► Sign ─► [your outbox layers] ─► broker
//! ```
//!
//! so a signature covers the message as it was sent, before anything a
//! layer of yours (e.g. one that moves large bodies elsewhere) does to it on
//! its way to the broker, and is checked on the way back after that layer
//! has undone it.
//!
//! # Refusing without settling
//!
//! An inbox layer that finds a delivery unacceptable does not settle it: it
//! marks it ([`Delivery::refused`](super::Delivery::refused)) and passes it
//! on, because what to do with it depends on the consumer. A server answers
//! the sender with an error and removes the request; a client on a shared
//! reply queue releases another client's message for its owner and drops
//! only its own. Consumers must check the mark before trusting anything a
//! delivery says.
//!
//! # Writing a layer
//!
//! Implement [`Inbox`](super::Inbox) or [`Outbox`](super::Outbox) for a
//! wrapper that holds the inner one and delegates what it does not change,
//! and a `Layer` that builds it. Test it alone on the
//! [memory broker](super::memory), as the layers here are.

mod envelope;
#[cfg(feature = "offload")]
pub mod offload;
mod retry;
mod signing;
pub(crate) mod stack;

pub use envelope::{UnwrapEnvelope, UnwrapEnvelopeLayer};
#[cfg(feature = "offload")]
pub use offload::{OffloadInbox, OffloadLayer, OffloadOutbox, PayloadRefused, S3Offload};
pub use retry::{Retry, RetryLayer};
pub use signing::{Sign, SignLayer, SignatureRefused, Verify, VerifyLayer};
pub(crate) use stack::Layers;
pub use tower_layer::{Identity, Layer, Stack};

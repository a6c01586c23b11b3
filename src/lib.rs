//! Model Context Protocol over queues.
//!
//! `asyncmcp` carries MCP JSON-RPC messages over message queues (Amazon SQS,
//! or the in-process [`MemoryBroker`]) so that an
//! ordinary [rmcp](https://docs.rs/rmcp) server can sit behind a queue, scale
//! out as competing consumers, and answer callers that hold no connection open.
//!
//! The crate is layered; arrows point down only:
//!
//! * [`wire`]: one MCP JSON-RPC message ⇄ one queue message (body and
//!   attributes), session ids. No I/O.
//! * [`queue`]: the broker seam ([`Inbox`](queue::Inbox),
//!   [`Outbox`](queue::Outbox)), its implementations, and its
//!   [layers](queue::layer) (SNS envelopes, signatures, send retry). Knows
//!   nothing of MCP.
//! * [`server`]: [`QueueServer`] polls a request queue
//!   and runs each request through a fresh rmcp service.
//! * [`tasks`]: durable MCP Tasks: the task store every replica shares,
//!   used by the server to run calls as tasks that survive their replica.
//! * [`client`]: [`QueueClientTransport`], an
//!   rmcp client transport, made by its
//!   [builder](QueueClientTransport::builder).
//! * `hybrid` (feature `hybrid`): a tower layer in front of rmcp's Streamable
//!   HTTP server that answers calls of chosen tools at the caller's webhook,
//!   through the webhook outbox (Python asyncmcp's StreamableHTTP+webhook).

pub mod client;
#[cfg(feature = "hybrid")]
pub mod hybrid;
pub mod queue;
pub mod server;
pub mod tasks;
pub mod wire;

#[cfg(feature = "webhook")]
pub use client::WebhookClientTransport;
pub use client::{QueueClientConfig, QueueClientTransport};
pub use queue::memory::MemoryBroker;
pub use server::QueueServer;

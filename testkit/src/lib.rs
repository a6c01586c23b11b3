//! What asyncmcp's tests, examples and benchmarks share.
//!
//! * [`TestBroker`]: the seam between the broker-generic tests and a broker
//!   (make, open and remove queues), with [`QueueSpec`] for the attributes a
//!   test needs;
//! * [`contract`]: the Inbox/Outbox contract suite every broker runs;
//! * [`task_store_contract`]: the contract suite every task store runs
//!   ([`task_store_contract_tests!`]);
//! * [`scenarios`]: the end-to-end scenarios every broker runs, on a
//!   [`Fixture`] (a demo server behind a fresh request queue), with
//!   [`FaultyOutbox`] to see and fail what a server sends;
//! * [`demo_tools`]: the demo MCP server; [`support`]: building and reading
//!   tool calls, logging; [`server_cli`] and [`client_cli`]: the command
//!   lines of the example servers and clients;
//! * [`aws`] (feature `sqs`): LocalStack, found or started once per test
//!   binary, clients for it, queue depth, topics with a queue subscribed
//!   (feature `sns`), a fault proxy and refused SDK operations;
//!   [`py_peer`]: the Python asyncmcp peer.
//!
//! The features mirror asyncmcp's: `sqs` (default) and `sns` build the
//! LocalStack helpers for those services and turn on the same features of
//! asyncmcp. asyncmcp's own features turn on the kit's, so a test build has
//! exactly the helpers its features can use.
//!
//! # Testing a broker
//!
//! A new broker implements the seam ([`Inbox`](asyncmcp::queue::Inbox) and
//! [`Outbox`](asyncmcp::queue::Outbox)), then [`TestBroker`] for it in its
//! test file, and adds one macro line, [`broker_tests!`]: one test per check
//! of the contract suite (in a module `contract`) and per scenario (in a
//! module `scenarios`), each on a fresh broker. [`contract_tests!`] and
//! [`scenario_tests!`] run one of the two, or a chosen few. For the
//! in-memory broker (`tests/memory.rs`):
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use asyncmcp::MemoryBroker;
//! use asyncmcp::queue::memory::MemoryQueueOptions;
//! use asyncmcp::queue::{Inbox, Outbox};
//! use asyncmcp_testkit::{QueueSpec, TestBroker, unique_name};
//!
//! struct Memory(MemoryBroker);
//!
//! #[async_trait]
//! impl TestBroker for Memory {
//!     async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
//!         let mut options = MemoryQueueOptions::default();
//!         if let Some(timeout) = spec.visibility_timeout {
//!             options = options.with_visibility_timeout(timeout);
//!         }
//!         if let Some(bytes) = spec.max_message_size {
//!             options = options.with_max_message_size(bytes);
//!         }
//!         self.0.create_queue(&unique_name(prefix), options)
//!     }
//!     async fn inbox(&self, address: &str) -> Arc<dyn Inbox> {
//!         Arc::new(self.0.inbox(address).expect("memory queue exists"))
//!     }
//!     fn outbox(&self) -> Arc<dyn Outbox> {
//!         Arc::new(self.0.outbox())
//!     }
//!     async fn delete_queue(&self, address: &str) {
//!         self.0.delete_queue(address);
//!     }
//!     async fn depth(&self, address: &str) -> usize {
//!         let (visible, in_flight) = self.0.depth(address);
//!         visible + in_flight
//!     }
//! }
//!
//! asyncmcp_testkit::broker_tests!(Memory(MemoryBroker::new()));
//! # fn main() {}
//! ```
//!
//! The broker expression is evaluated in each test, inside an `async` block
//! (so it may `.await`, e.g. `Sqs::new().await`), in the scope of the macro
//! call. A broker for which a check or a scenario cannot hold runs the
//! others by name: `contract_tests!(broker; name, ...)`.
#![warn(missing_docs)]

mod broker;
pub mod client_cli;
pub mod contract;
pub mod demo_tools;
mod faulty_outbox;
mod fixture;
mod layered;
pub mod py_peer;
pub mod real_clients;
pub mod scenarios;
pub mod server_cli;
pub mod support;
pub mod task_store_contract;
pub mod task_tools;
pub mod tasks_client;

#[cfg(feature = "sqs")]
pub mod aws;

pub use broker::{QueueSpec, TestBroker, unique_name};
pub use faulty_outbox::{Attempt, Failure, FaultyOutbox};
pub use fixture::{Fixture, eventually, next_reply};
pub use layered::Layered;

/// Defines one test per check of the [`contract`] suite (in a module
/// `contract`) and one per [scenario](scenarios) (in a module `scenarios`),
/// each running on the broker that `$broker` builds.
///
/// `$broker` is an expression of a type that implements [`TestBroker`],
/// evaluated afresh in each test inside an `async` block (so it may
/// `.await`), in the scope of the macro call:
///
/// ```text
/// asyncmcp_testkit::broker_tests!(Sqs::new().await);
/// ```
#[macro_export]
macro_rules! broker_tests {
    ($broker:expr $(,)?) => {
        $crate::contract_tests!($broker);
        $crate::scenario_tests!($broker);
    };
}

/// What the macros expand to; not part of the kit's API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// Runs one test on a runtime of its own, as `#[tokio::test]` does (one
    /// thread, I/O and time drivers on); the macros use this rather than the
    /// attribute, which would need `tokio` among the caller's dependencies.
    pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the test")
            .block_on(future)
    }
}

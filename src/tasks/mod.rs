//! Durable MCP Tasks (`io.modelcontextprotocol/tasks`) across replicas.
//!
//! rmcp's [`TaskManager`](rmcp::task_manager::TaskManager) keeps tasks in one
//! process. Behind a queue any replica may take any message, and the replica
//! running a task may die, so here the task's state lives in a
//! [`TaskStore`] that every replica shares:
//!
//! * [`record`]: one task's state ([`TaskRecord`]) and its wire form.
//! * [`store`]: the [`TaskStore`] seam: versioned reads and compare-and-swap
//!   writes, which is all the stores need to offer; every state change is
//!   written through [`update`](store::update), which retries on conflicts.
//! * [`TaskSettings`]: which calls a server runs as tasks, and how;
//!   [`StoreSpec`]: a store named in one string (`memory`, `sqlite:PATH`,
//!   `s3://BUCKET/PREFIX`).
//! * [`memory`]: [`MemoryTaskStore`], the default (one process).
//! * `sqlite` (feature `tasks-sqlite`): `SqliteTaskStore`, an SQLite file
//!   shared by the replicas of one machine, surviving restarts.
//! * `s3` (feature `tasks-s3`): `S3TaskStore`, one S3 object per task,
//!   updated with conditional writes, for replicas on many machines.
//! * [`id`]: task ids derived from the request's identity, so a request
//!   redelivered to another replica runs again under the same task id and the
//!   caller's polling just continues.

pub mod id;
pub mod memory;
pub mod record;
#[cfg(feature = "tasks-s3")]
pub mod s3;
mod settings;
mod spec;
#[cfg(feature = "tasks-sqlite")]
pub mod sqlite;
pub mod store;

pub use memory::MemoryTaskStore;
pub use record::TaskRecord;
#[cfg(feature = "tasks-s3")]
pub use s3::S3TaskStore;
pub use settings::TaskSettings;
pub use spec::{BadStoreSpec, STORE_FORMS, StoreSpec};
#[cfg(feature = "tasks-sqlite")]
pub use sqlite::SqliteTaskStore;
pub use store::{TaskStore, TaskStoreError, Version, Versioned};

/// The `_meta` key of a `tools/call` by which a caller asks for its task's
/// status changes as `notifications/tasks` at its reply address (value
/// `true`). See docs/tasks.md.
pub const NOTIFICATIONS_META_KEY: &str = "dev.asyncmcp/taskNotifications";

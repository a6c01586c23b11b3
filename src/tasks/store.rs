//! The [`TaskStore`] seam: versioned reads and compare-and-swap writes.
//!
//! A store offers three primitives and nothing MCP-specific: create a record
//! if absent, read it with its version, and replace it if its version is
//! still the one read. Every state change (cancel, input responses, the
//! result) goes through [`update`], which reads, applies a change and writes
//! back, rereading on a conflict, so two replicas changing one task at once
//! never lose either change. Expired records read as absent.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::record::{TaskRecord, now_ms};

/// A record's version, opaque to callers: a counter for the memory and SQLite
/// stores, an `ETag` for S3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The record.
    pub record: TaskRecord,
    /// Its version, for [`TaskStore::replace`].
    pub version: Version,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskStoreError {
    /// The record changed since it was read (compare-and-swap lost), or a
    /// record with that id already exists (create).
    #[error("task {0} was changed concurrently")]
    Conflict(String),
    /// No such task (or it expired).
    #[error("no task {0}")]
    NotFound(String),
    /// A stored record could not be read back.
    #[error("task record {id} is corrupt: {reason}")]
    Corrupt {
        /// The task id.
        id: String,
        /// What was wrong.
        reason: String,
    },
    /// The backing store failed (I/O, network, service error).
    #[error("task store: {0}")]
    Backend(String),
}

/// Where task records live, shared by every replica that serves a queue.
///
/// Implementations: [`MemoryTaskStore`](super::MemoryTaskStore) (one process).
/// Each passes the same contract suite (the test kit's `task_store_contract`).
#[async_trait]
pub trait TaskStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `record` unless a live record with its id exists. Returns the
    /// record now stored (the existing one if there was one) and whether this
    /// call created it. An expired record counts as absent and is replaced.
    async fn create(&self, record: TaskRecord) -> Result<(Versioned, bool), TaskStoreError>;

    /// The live record with `id`, or `None` (never stored, deleted, expired).
    async fn get(&self, id: &str) -> Result<Option<Versioned>, TaskStoreError>;

    /// Replaces the record if its version is still `expected`; returns the
    /// new version. [`TaskStoreError::Conflict`] if it changed meanwhile,
    /// [`TaskStoreError::NotFound`] if it is gone.
    async fn replace(
        &self,
        record: &TaskRecord,
        expected: &Version,
    ) -> Result<Version, TaskStoreError>;

    /// Deletes the record (absent is not an error).
    async fn delete(&self, id: &str) -> Result<(), TaskStoreError>;
}

/// How many times [`update`] rereads after losing a compare-and-swap before
/// giving up. Conflicts come from a handful of writers (the runner, a cancel,
/// an update), so a few retries settle any real race.
const UPDATE_ATTEMPTS: usize = 16;

/// Reads task `id`, applies `change` and writes it back, retrying on
/// conflicts. `change` returns `false` to leave the record as it is (no
/// write). Returns the record as stored afterwards.
pub async fn update<S, F>(store: &S, id: &str, mut change: F) -> Result<TaskRecord, TaskStoreError>
where
    S: TaskStore + ?Sized,
    F: FnMut(&mut TaskRecord) -> bool + Send,
{
    for attempt in 0..UPDATE_ATTEMPTS {
        let Some(Versioned {
            mut record,
            version,
        }) = store.get(id).await?
        else {
            return Err(TaskStoreError::NotFound(id.to_owned()));
        };
        if !change(&mut record) {
            return Ok(record);
        }
        match store.replace(&record, &version).await {
            Ok(_) => return Ok(record),
            Err(TaskStoreError::Conflict(_)) => {
                // Back off a little, growing, so racing writers interleave.
                let millis = 2u64.saturating_pow(u32::try_from(attempt).unwrap_or(10).min(7));
                tokio::time::sleep(Duration::from_millis(millis)).await;
            }
            Err(other) => return Err(other),
        }
    }
    Err(TaskStoreError::Conflict(id.to_owned()))
}

/// Whether `record` is live now (not expired).
pub fn is_live(record: &TaskRecord) -> bool {
    !record.is_expired_at(now_ms())
}

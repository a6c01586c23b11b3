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
/// Implementations: [`MemoryTaskStore`](super::MemoryTaskStore) (one
/// process), `SqliteTaskStore` (feature `tasks-sqlite`: one machine) and
/// `S3TaskStore` (feature `tasks-s3`: many machines).
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

/// How long [`update`] keeps retrying after lost compare-and-swaps before
/// giving up with [`TaskStoreError::Conflict`]. A lost swap means another
/// writer's change went in, so retrying always makes progress; the bound only
/// caps how long one writer may keep losing. Conflicts usually come from a
/// handful of writers (the runner, a cancel, an update) and settle in a retry
/// or two; a burst of a hundred writers on one task over S3 still gets
/// through well within it (the contract suite checks such a burst).
pub const UPDATE_PATIENCE: Duration = Duration::from_secs(60);

/// The longest pause between two attempts of [`update`]. Pauses grow with
/// each loss up to this, so a crowd of writers thins its own retries out
/// instead of swamping the store with writes that all fail.
const MAX_BACKOFF_MS: u64 = 1_000;

/// Reads task `id`, applies `change` and writes it back, retrying on
/// conflicts. `change` returns `false` to leave the record as it is (no
/// write). Returns the record as stored afterwards.
pub async fn update<S, F>(store: &S, id: &str, mut change: F) -> Result<TaskRecord, TaskStoreError>
where
    S: TaskStore + ?Sized,
    F: FnMut(&mut TaskRecord) -> bool + Send,
{
    let deadline = tokio::time::Instant::now() + UPDATE_PATIENCE;
    let mut attempt: u32 = 0;
    loop {
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
            Err(TaskStoreError::Conflict(_)) if tokio::time::Instant::now() < deadline => {
                tracing::trace!(task = %id, attempt, "task store: update lost a race, retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
            Err(TaskStoreError::Conflict(_)) => {
                tracing::warn!(task = %id, attempt, "task store: update kept losing races; giving up");
                return Err(TaskStoreError::Conflict(id.to_owned()));
            }
            Err(other) => return Err(other),
        }
    }
}

/// The pause after losing the `attempt`th compare-and-swap: random in
/// `0..=min(2^attempt, MAX_BACKOFF_MS)` ms ("full jitter"), so writers that
/// collided do not collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 2u64.saturating_pow(attempt.min(16)).min(MAX_BACKOFF_MS);
    let random = u64::try_from(uuid::Uuid::new_v4().as_u128() >> 64).unwrap_or(0);
    Duration::from_millis(random % (ceiling + 1))
}

/// Whether `record` is live now (not expired).
pub fn is_live(record: &TaskRecord) -> bool {
    !record.is_expired_at(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_varies() {
        assert!(backoff(0) <= Duration::from_millis(1));
        let late: Vec<Duration> = (0..50).map(|_| backoff(40)).collect();
        assert!(
            late.iter()
                .all(|d| *d <= Duration::from_millis(MAX_BACKOFF_MS))
        );
        assert!(late.iter().any(|d| *d != late[0]), "no jitter: {late:?}");
    }
}

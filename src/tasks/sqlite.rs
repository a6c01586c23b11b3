//! [`SqliteTaskStore`]: task records in an SQLite file (feature `tasks-sqlite`).
//!
//! For replicas on one machine (or one replica that must survive its own
//! restarts): every replica opens the same file, each with its own
//! connection, and SQLite's file locks serialise their writes. The file is in
//! WAL mode, so readers never wait for a writer.
//!
//! One row per task: the record as JSON, its expiry (indexed, so expired rows
//! are found without reading records) and a `version` integer, the
//! compare-and-swap token: [`replace`](TaskStore::replace) is
//! `UPDATE ... WHERE id = ? AND version = ?` and counts the rows it changed.
//! A record's first version is random and each write adds one, so a record
//! created again under an id after its predecessor expired (or was purged)
//! never takes a version that a slow writer may still hold for the old one.
//! [`create`](TaskStore::create) is one `INSERT ... ON CONFLICT DO UPDATE
//! ... WHERE <the row has expired>`: it creates, or replaces an expired
//! record, or leaves a live one alone, atomically. Each create also deletes
//! the other expired rows.
//!
//! SQLite calls block, so each runs on tokio's blocking pool; a handle's
//! connection is used by one call at a time. Writers from several handles
//! wait up to [`BUSY_TIMEOUT`] for the file's write lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::record::{TaskRecord, now_ms};
use super::store::{TaskStore, TaskStoreError, Version, Versioned};

/// How long a write waits for another connection's write lock on the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS asyncmcp_tasks (
        id            TEXT PRIMARY KEY NOT NULL,
        version       INTEGER NOT NULL,
        expires_at_ms INTEGER,
        record        TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS asyncmcp_tasks_expiry
        ON asyncmcp_tasks (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
";

/// Task records in an SQLite file shared by the replicas of one machine;
/// they survive restarts. Cloning shares the connection; open the file again
/// for a connection of its own.
#[derive(Debug, Clone)]
pub struct SqliteTaskStore {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteTaskStore {
    /// Opens (creating if needed) the store in the SQLite file at `path`:
    /// WAL mode, the table and its index.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, TaskStoreError> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let connection = tokio::task::spawn_blocking(move || {
            let connection = Connection::open(&opened).map_err(backend)?;
            connection.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
            // journal_mode answers with the mode now in force.
            let mode: String = connection
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(backend)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %opened.display(), %mode, "task store: SQLite kept its journal mode (WAL refused)");
            }
            connection
                .execute_batch("PRAGMA synchronous = NORMAL;")
                .map_err(backend)?;
            connection.execute_batch(SCHEMA).map_err(backend)?;
            Ok::<_, TaskStoreError>(connection)
        })
        .await
        .map_err(joined)??;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path,
        })
    }

    /// The file this store is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records the file holds, expired ones not yet deleted included.
    pub async fn len(&self) -> Result<usize, TaskStoreError> {
        self.call(|connection| {
            let count: i64 = connection
                .query_row("SELECT COUNT(*) FROM asyncmcp_tasks", [], |row| row.get(0))
                .map_err(backend)?;
            Ok(usize::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Whether the file holds no records.
    pub async fn is_empty(&self) -> Result<bool, TaskStoreError> {
        Ok(self.len().await? == 0)
    }

    /// Deletes every expired record now; returns how many.
    /// [`create`](TaskStore::create) does this too, so a store that creates
    /// tasks needs no other sweep.
    pub async fn purge_expired(&self) -> Result<usize, TaskStoreError> {
        self.call(|connection| purge(connection, now_ms(), None))
            .await
    }

    /// Runs `work` on this handle's connection on the blocking pool.
    async fn call<T, F>(&self, work: F) -> Result<T, TaskStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, TaskStoreError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic mid-call leaves SQLite consistent (its own transactions),
            // so a poisoned lock is still usable.
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(joined)?
    }
}

fn backend(error: rusqlite::Error) -> TaskStoreError {
    TaskStoreError::Backend(format!("sqlite: {error}"))
}

fn joined(error: tokio::task::JoinError) -> TaskStoreError {
    TaskStoreError::Backend(format!("sqlite call did not finish: {error}"))
}

/// Expiry times as SQLite integers (it has no unsigned 64-bit type).
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A random first version: positive, below 2^62, so `+ 1` never overflows.
fn first_version() -> i64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 2;
    i64::try_from(bits).unwrap_or(1).max(1)
}

fn encode(record: &TaskRecord) -> Result<String, TaskStoreError> {
    serde_json::to_string(record)
        .map_err(|e| TaskStoreError::Backend(format!("encoding task {}: {e}", record.id())))
}

fn decode(id: &str, version: i64, json: &str) -> Result<Versioned, TaskStoreError> {
    let record: TaskRecord = serde_json::from_str(json).map_err(|e| TaskStoreError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    })?;
    if record.id() != id {
        return Err(TaskStoreError::Corrupt {
            id: id.to_owned(),
            reason: format!("the row holds task {}", record.id()),
        });
    }
    Ok(Versioned {
        record,
        version: Version(version.to_string()),
    })
}

/// Deletes the rows expired at `now` (but `keep`); returns how many.
fn purge(connection: &Connection, now: u64, keep: Option<&str>) -> Result<usize, TaskStoreError> {
    connection
        .execute(
            "DELETE FROM asyncmcp_tasks
             WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1 AND id IS NOT ?2",
            params![millis(now), keep],
        )
        .map_err(backend)
}

/// The row `id` (expired or not): version, expiry, record JSON.
fn row(
    connection: &Connection,
    id: &str,
) -> Result<Option<(i64, Option<i64>, String)>, TaskStoreError> {
    connection
        .query_row(
            "SELECT version, expires_at_ms, record FROM asyncmcp_tasks WHERE id = ?1",
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(backend)
}

fn is_expired(expires_at_ms: Option<i64>, now: u64) -> bool {
    expires_at_ms.is_some_and(|at| at <= millis(now))
}

#[async_trait]
impl TaskStore for SqliteTaskStore {
    async fn create(&self, record: TaskRecord) -> Result<(Versioned, bool), TaskStoreError> {
        let json = encode(&record)?;
        self.call(move |connection| {
            let now = now_ms();
            let id = record.id().to_owned();
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let purged = purge(&transaction, now, Some(&id))?;
            if purged > 0 {
                tracing::debug!(purged, "task store: deleted expired records");
            }
            // Creates the row, or takes over an expired one (its version
            // moves on, so a writer holding the old one loses its CAS).
            let created = transaction
                .execute(
                    "INSERT INTO asyncmcp_tasks (id, version, expires_at_ms, record)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET
                         version = asyncmcp_tasks.version + 1,
                         expires_at_ms = excluded.expires_at_ms,
                         record = excluded.record
                     WHERE asyncmcp_tasks.expires_at_ms IS NOT NULL
                       AND asyncmcp_tasks.expires_at_ms <= ?5",
                    params![
                        id,
                        first_version(),
                        record.expires_at_ms.map(millis),
                        json,
                        millis(now)
                    ],
                )
                .map_err(backend)?
                == 1;
            let Some((version, _, stored)) = row(&transaction, &id)? else {
                return Err(TaskStoreError::Backend(format!(
                    "task {id} vanished inside a transaction"
                )));
            };
            transaction.commit().map_err(backend)?;
            if created {
                return Ok((
                    Versioned {
                        record,
                        version: Version(version.to_string()),
                    },
                    true,
                ));
            }
            Ok((decode(&id, version, &stored)?, false))
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Versioned>, TaskStoreError> {
        let id = id.to_owned();
        self.call(move |connection| match row(connection, &id)? {
            Some((_, expires_at_ms, _)) if is_expired(expires_at_ms, now_ms()) => Ok(None),
            Some((version, _, json)) => decode(&id, version, &json).map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn replace(
        &self,
        record: &TaskRecord,
        expected: &Version,
    ) -> Result<Version, TaskStoreError> {
        let id = record.id().to_owned();
        // A version this store never gave out matches no row.
        let Ok(expected) = expected.0.parse::<i64>() else {
            return Err(match self.get(&id).await? {
                Some(_) => TaskStoreError::Conflict(id),
                None => TaskStoreError::NotFound(id),
            });
        };
        let json = encode(record)?;
        let expires_at_ms = record.expires_at_ms.map(millis);
        self.call(move |connection| {
            let changed = connection
                .execute(
                    "UPDATE asyncmcp_tasks SET version = version + 1, expires_at_ms = ?1, record = ?2
                     WHERE id = ?3 AND version = ?4",
                    params![expires_at_ms, json, id, expected],
                )
                .map_err(backend)?;
            if changed == 1 {
                return Ok(Version(expected.saturating_add(1).to_string()));
            }
            match row(connection, &id)? {
                Some(_) => Err(TaskStoreError::Conflict(id)),
                None => Err(TaskStoreError::NotFound(id)),
            }
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<(), TaskStoreError> {
        let id = id.to_owned();
        self.call(move |connection| {
            connection
                .execute("DELETE FROM asyncmcp_tasks WHERE id = ?1", params![id])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

//! The SQLite task store (feature `tasks-sqlite`): the task store contract,
//! each handle its own connection to one file in a temporary directory (as
//! replicas on one machine open it), and what only a file can do: outlive
//! the process, drop expired rows, and answer a corrupt row with an error.

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::tasks::store::update;
use asyncmcp::tasks::{SqliteTaskStore, TaskRecord, TaskStore, TaskStoreError};
use asyncmcp_testkit::task_store_contract::TestTaskStore;
use rmcp::model::TaskStatus;
use tempfile::TempDir;

struct Sqlite {
    dir: TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("tasks.sqlite3")
    }
}

#[async_trait]
impl TestTaskStore for Sqlite {
    async fn handle(&self) -> Arc<dyn TaskStore> {
        Arc::new(SqliteTaskStore::open(self.path()).await.expect("open"))
    }
}

asyncmcp_testkit::task_store_contract_tests!(Sqlite::new());

/// A record written, the store dropped, the file opened again (a restart):
/// the record is there with its version, and can be updated.
#[tokio::test]
async fn records_survive_a_restart() {
    let sqlite = Sqlite::new();
    let mut record = TaskRecord::new("task-restart", "client", Some(600_000), Some(100));
    record.runs = 1;
    let version = {
        let store = SqliteTaskStore::open(sqlite.path()).await.expect("open");
        let (stored, created) = store.create(record.clone()).await.expect("create");
        assert!(created);
        stored.version
    };
    let store = SqliteTaskStore::open(sqlite.path()).await.expect("reopen");
    let read = store
        .get("task-restart")
        .await
        .expect("get")
        .expect("survived");
    assert_eq!(read.record, record);
    assert_eq!(read.version, version);
    let updated = update(&store, "task-restart", |record| {
        record.set_status(TaskStatus::Completed);
        true
    })
    .await
    .expect("update after restart");
    assert_eq!(updated.status(), TaskStatus::Completed);
    let mode: String = rusqlite::Connection::open(sqlite.path())
        .and_then(|c| c.query_row("PRAGMA journal_mode", [], |row| row.get(0)))
        .expect("journal mode");
    assert_eq!(mode.to_lowercase(), "wal");
}

/// Expired rows are deleted by the next create (and by `purge_expired`);
/// live ones and ones without a ttl stay.
#[tokio::test]
async fn expired_rows_are_deleted() {
    let sqlite = Sqlite::new();
    let store = SqliteTaskStore::open(sqlite.path()).await.expect("open");
    let short = TaskRecord::new("task-short", "client", Some(20), None);
    store.create(short.clone()).await.expect("create");
    store
        .create(TaskRecord::new("task-forever", "client", None, None))
        .await
        .expect("create");
    let at = short.expires_at_ms.unwrap_or_default();
    while asyncmcp::tasks::record::now_ms() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.len().await.expect("len"),
        2,
        "rows are kept until a create"
    );
    store
        .create(TaskRecord::new("task-live", "client", Some(600_000), None))
        .await
        .expect("create");
    assert_eq!(
        store.len().await.expect("len"),
        2,
        "the expired row is still there"
    );
    assert!(store.get("task-short").await.expect("get").is_none());
    assert!(store.get("task-forever").await.expect("get").is_some());
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
}

/// A row that is not a record (written by anyone who can write the file)
/// is reported as corrupt; it does not panic the caller nor hide as absent.
#[tokio::test]
async fn a_corrupt_row_is_an_error() {
    let sqlite = Sqlite::new();
    let store = SqliteTaskStore::open(sqlite.path()).await.expect("open");
    let connection = rusqlite::Connection::open(sqlite.path()).expect("open the file");
    for (id, json) in [
        ("task-garbage", "{not json"),
        ("task-other", r#"{"task":{"taskId":"task-elsewhere"}}"#),
    ] {
        connection
            .execute(
                "INSERT INTO asyncmcp_tasks (id, version, expires_at_ms, record) VALUES (?1, 1, NULL, ?2)",
                rusqlite::params![id, json],
            )
            .expect("insert");
        match store.get(id).await {
            Err(TaskStoreError::Corrupt { id: corrupt, .. }) => assert_eq!(corrupt, id),
            other => panic!("{id}: {other:?}"),
        }
    }
    let forged = TaskRecord::new("task-forged", "client", None, None);
    let json =
        serde_json::to_string(&TaskRecord::new("task-victim", "victim", None, None)).expect("json");
    connection
        .execute(
            "INSERT INTO asyncmcp_tasks (id, version, expires_at_ms, record) VALUES (?1, 1, NULL, ?2)",
            rusqlite::params![forged.id(), json],
        )
        .expect("insert");
    assert!(
        matches!(
            store.get(forged.id()).await,
            Err(TaskStoreError::Corrupt { .. })
        ),
        "a row holding another task's record was served under the row's id"
    );
}

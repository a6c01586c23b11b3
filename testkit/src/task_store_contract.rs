//! The task store contract: what the queue server relies on of every
//! [`TaskStore`], checked the same way on each.
//!
//! * `create` stores a record unless a live one has its id, and then returns
//!   that one, untouched; of many concurrent creates of one id exactly one
//!   wins;
//! * `get` of an id never stored, or deleted, is `None`;
//! * `replace` with the version read succeeds once; with a stale version it
//!   is a [`Conflict`](TaskStoreError::Conflict); of a record that is gone it
//!   is [`NotFound`](TaskStoreError::NotFound);
//! * a record past its expiry reads as absent, a task can be created over
//!   it, and a writer still holding the old record's version loses;
//! * [`update`] from two handles (two replicas) loses no change: 2 × 12
//!   concurrent increments make 24; a cancel racing the runner's progress
//!   and completion keeps both, and ends in one consistent terminal state;
//! * every field of a record comes back as it was written.
//!
//! A store under test implements [`TestTaskStore`]: each call of
//! [`handle`](TestTaskStore::handle) opens the same records the way another
//! replica would (its own connection or client). Each check is an
//! `async fn(&dyn TestTaskStore)`; [`task_store_contract_tests!`](crate::task_store_contract_tests)
//! makes one test of each.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use asyncmcp::tasks::record::now_ms;
use asyncmcp::tasks::store::update;
use asyncmcp::tasks::{TaskRecord, TaskStore, TaskStoreError, Version};
use rmcp::model::{JsonObject, TaskStatus};
use serde_json::json;

/// A task store under test: fresh, empty storage per test.
#[async_trait]
pub trait TestTaskStore: Send + Sync {
    /// A handle onto this test's records, opened as another replica would
    /// open it (its own connection, its own client). Every call is a new one.
    async fn handle(&self) -> Arc<dyn TaskStore>;

    /// Removes what the test left (a file, a bucket). Called at the end of a
    /// check that passed.
    async fn cleanup(&self) {}
}

fn object(value: serde_json::Value) -> JsonObject {
    value.as_object().cloned().unwrap_or_default()
}

/// A unique task id for one check.
fn task_id(check: &str) -> String {
    format!("task-{check}-{}", uuid::Uuid::new_v4().simple())
}

/// Waits until `record` has expired by the clock the stores read.
async fn until_expired(record: &TaskRecord) {
    let at = record.expires_at_ms.expect("a record with a ttl");
    while now_ms() <= at {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `create` stores a new record once; creating the id again returns the
/// stored record (not the one offered) and does not overwrite it.
pub async fn create_if_absent_returns_the_existing_record(store: &dyn TestTaskStore) {
    let handle = store.handle().await;
    let id = task_id("create");
    let first = TaskRecord::new(&id, "client-a", Some(600_000), Some(500));
    let (stored, created) = handle.create(first.clone()).await.expect("create");
    assert!(created);
    assert_eq!(stored.record, first);

    let mut second = TaskRecord::new(&id, "client-b", Some(600_000), None);
    second.runs = 7;
    let (existing, created) = handle.create(second).await.expect("create again");
    assert!(!created, "a live record was replaced");
    assert_eq!(existing.record, first);
    assert_eq!(existing.version, stored.version);

    let read = handle.get(&id).await.expect("get").expect("stored");
    assert_eq!(read.record.owner, "client-a");
    assert_eq!(read.version, stored.version);
    handle.delete(&id).await.expect("delete");
}

/// Of many creates of one id at once, from two handles, exactly one creates
/// and every one returns the winner's record.
pub async fn concurrent_creates_make_one_record(store: &dyn TestTaskStore) {
    let handles = [store.handle().await, store.handle().await];
    let id = task_id("create-race");
    let attempts = (0..16).map(|n| {
        let handle = Arc::clone(&handles[n % 2]);
        let record = TaskRecord::new(&id, format!("client-{n}"), Some(600_000), None);
        async move { handle.create(record).await.expect("create") }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter(|(_, created)| *created).collect();
    assert_eq!(winners.len(), 1, "creates that won: {results:?}");
    let owner = &winners[0].0.record.owner;
    for (stored, _) in &results {
        assert_eq!(&stored.record.owner, owner);
    }
    let read = handles[0].get(&id).await.expect("get").expect("stored");
    assert_eq!(&read.record.owner, owner);
    handles[0].delete(&id).await.expect("delete");
}

/// `get` of an id never stored is `None`, not an error.
pub async fn get_of_an_unknown_id_is_none(store: &dyn TestTaskStore) {
    let handle = store.handle().await;
    assert!(
        handle
            .get(&task_id("unknown"))
            .await
            .expect("get")
            .is_none()
    );
    // Ids come from callers (`tasks/get`): odd ones are just unknown.
    for odd in [
        "",
        "../../etc/passwd",
        "a/b/c",
        "é ✓ \u{0}",
        &"x".repeat(2000),
    ] {
        assert!(
            handle.get(odd).await.expect("get of an odd id").is_none(),
            "{odd:?}"
        );
    }
}

/// A replace with the version read succeeds and gives a new version; the
/// old one is then stale: a [`Conflict`](TaskStoreError::Conflict) that
/// leaves the record as the winner wrote it.
pub async fn replace_with_a_stale_version_conflicts(store: &dyn TestTaskStore) {
    let handle = store.handle().await;
    let id = task_id("stale");
    let (stored, _) = handle
        .create(TaskRecord::new(&id, "client", Some(600_000), None))
        .await
        .expect("create");

    let mut first = stored.record.clone();
    first.runs = 1;
    let newer = handle
        .replace(&first, &stored.version)
        .await
        .expect("replace");
    assert_ne!(newer, stored.version);

    let mut late = stored.record.clone();
    late.cancel_requested = true;
    match handle.replace(&late, &stored.version).await {
        Err(TaskStoreError::Conflict(conflict)) => assert_eq!(conflict, id),
        other => panic!("a stale version must conflict: {other:?}"),
    }
    match handle
        .replace(&late, &Version("not-a-version".into()))
        .await
    {
        Err(TaskStoreError::Conflict(_)) => {}
        other => panic!("a version never given out must conflict: {other:?}"),
    }
    let read = handle.get(&id).await.expect("get").expect("stored");
    assert_eq!(read.record, first);
    assert_eq!(read.version, newer);

    let mut second = read.record.clone();
    second.runs = 2;
    handle
        .replace(&second, &newer)
        .await
        .expect("replace with the new version");
    handle.delete(&id).await.expect("delete");
}

/// A replace of a record that was never stored, or was deleted, is
/// [`NotFound`](TaskStoreError::NotFound) and stores nothing.
pub async fn replace_of_a_missing_record_is_not_found(store: &dyn TestTaskStore) {
    let handle = store.handle().await;
    let id = task_id("missing");
    let (stored, _) = handle
        .create(TaskRecord::new(&id, "client", Some(600_000), None))
        .await
        .expect("create");
    handle.delete(&id).await.expect("delete");
    match handle.replace(&stored.record, &stored.version).await {
        Err(TaskStoreError::NotFound(missing)) => assert_eq!(missing, id),
        other => panic!("replace of a deleted record: {other:?}"),
    }
    assert!(
        handle.get(&id).await.expect("get").is_none(),
        "replace recreated it"
    );

    let never = TaskRecord::new(task_id("never"), "client", None, None);
    match handle.replace(&never, &stored.version).await {
        Err(TaskStoreError::NotFound(_)) => {}
        other => panic!("replace of a record never stored: {other:?}"),
    }
    match update(&*handle, never.id(), |_| true).await {
        Err(TaskStoreError::NotFound(_)) => {}
        other => panic!("update of a record never stored: {other:?}"),
    }
}

/// `delete` removes the record for every handle; deleting again (or an id
/// never stored) is fine; the id can then be created afresh.
pub async fn delete_removes_the_record(store: &dyn TestTaskStore) {
    let (one, two) = (store.handle().await, store.handle().await);
    let id = task_id("delete");
    one.create(TaskRecord::new(&id, "client", None, None))
        .await
        .expect("create");
    assert!(two.get(&id).await.expect("get").is_some());
    two.delete(&id).await.expect("delete");
    assert!(one.get(&id).await.expect("get").is_none());
    one.delete(&id).await.expect("delete again");
    one.delete(&task_id("never"))
        .await
        .expect("delete of an unknown id");
    let (_, created) = one
        .create(TaskRecord::new(&id, "client", None, None))
        .await
        .expect("create after delete");
    assert!(created);
    one.delete(&id).await.expect("delete");
}

/// A record past its expiry reads as absent; a create over it succeeds; a
/// writer that read the expired record before loses its compare-and-swap.
pub async fn expired_records_read_as_absent(store: &dyn TestTaskStore) {
    let (one, two) = (store.handle().await, store.handle().await);
    let id = task_id("expiry");
    let short = TaskRecord::new(&id, "client-old", Some(30), None);
    let (old, _) = one.create(short.clone()).await.expect("create");
    until_expired(&short).await;
    assert!(
        one.get(&id).await.expect("get").is_none(),
        "expired record still read"
    );
    assert!(
        two.get(&id).await.expect("get").is_none(),
        "expired record still read"
    );
    match update(&*two, &id, |record| {
        record.cancel_requested = true;
        true
    })
    .await
    {
        Err(TaskStoreError::NotFound(_)) => {}
        other => panic!("update of an expired record: {other:?}"),
    }

    let fresh = TaskRecord::new(&id, "client-new", Some(600_000), None);
    let (stored, created) = two
        .create(fresh.clone())
        .await
        .expect("create over expired");
    assert!(created, "create over an expired record did not create");
    assert_eq!(stored.record, fresh);

    let mut late = old.record.clone();
    late.runs = 99;
    assert!(
        one.replace(&late, &old.version).await.is_err(),
        "a writer holding the expired record's version overwrote its successor"
    );
    let read = one.get(&id).await.expect("get").expect("the new record");
    assert_eq!(read.record, fresh);
    one.delete(&id).await.expect("delete");
}

/// How many increments race in [`concurrent_updates_lose_nothing`].
const RACING_INCREMENTS: u32 = 24;

/// [`update`] from two handles, 12 concurrent increments each, loses none.
/// (Every compare-and-swap round has one winner, so the store sees about
/// n² / 2 requests: 24 keep the race real and the S3 run short.)
pub async fn concurrent_updates_lose_nothing(store: &dyn TestTaskStore) {
    let (one, two) = (store.handle().await, store.handle().await);
    let id = task_id("increments");
    one.create(TaskRecord::new(&id, "client", Some(600_000), None))
        .await
        .expect("create");
    let increments = (0..RACING_INCREMENTS).map(|n| {
        let handle = if n % 2 == 0 { &one } else { &two };
        let id = id.clone();
        async move {
            update(&**handle, &id, |record| {
                record.runs += 1;
                true
            })
            .await
        }
    });
    for result in futures::future::join_all(increments).await {
        result.expect("update");
    }
    let read = two.get(&id).await.expect("get").expect("stored");
    assert_eq!(read.record.runs, RACING_INCREMENTS, "lost increments");
    one.delete(&id).await.expect("delete");
}

/// Two replicas racing on one task: the runner reports progress (20
/// writes) and then completes, while the other sets `cancel_requested` and
/// cancels. Neither write is lost: every progress step counts, the cancel
/// flag is set, and the task ends in one consistent state (completed with
/// its result, or cancelled without one). Run on several tasks at once.
pub async fn racing_cancel_and_completion_keep_both(store: &dyn TestTaskStore) {
    let (runner, canceller) = (store.handle().await, store.handle().await);
    let ids: Vec<String> = (0..6).map(|_| task_id("cancel-race")).collect();
    for id in &ids {
        runner
            .create(TaskRecord::new(id, "client", Some(600_000), None))
            .await
            .expect("create");
    }
    let races = ids.iter().enumerate().map(|(n, id)| {
        let (runner, canceller) = (Arc::clone(&runner), Arc::clone(&canceller));
        async move {
            let run = async {
                for _ in 0..20 {
                    update(&*runner, id, |record| {
                        record.runs += 1;
                        record.touch();
                        true
                    })
                    .await
                    .expect("progress");
                }
                update(&*runner, id, |record| {
                    record.complete(object(
                        json!({"content": [{"type": "text", "text": "done"}]}),
                    ));
                    true
                })
                .await
                .expect("complete")
            };
            let cancel = async {
                // Cancel at a different point of each task's run.
                for _ in 0..(n * 4) {
                    tokio::task::yield_now().await;
                }
                update(&*canceller, id, |record| {
                    record.cancel_requested = true;
                    record.set_status(TaskStatus::Cancelled);
                    true
                })
                .await
                .expect("cancel")
            };
            tokio::join!(run, cancel);
        }
    });
    futures::future::join_all(races).await;

    for id in &ids {
        let read = canceller.get(id).await.expect("get").expect("stored");
        let record = read.record;
        assert_eq!(record.runs, 20, "{id}: lost progress writes");
        assert!(record.cancel_requested, "{id}: the cancel was lost");
        match record.status() {
            TaskStatus::Completed => {
                assert!(record.result.is_some(), "{id}: completed without a result");
            }
            TaskStatus::Cancelled => {
                assert!(record.result.is_none(), "{id}: cancelled with a result");
            }
            other => panic!("{id}: not terminal after the race: {other:?}"),
        }
        runner.delete(id).await.expect("delete");
    }
}

/// Every field of a record (input requests, request state, responses,
/// result, error, owner, expiry, counters) comes back as it was written.
pub async fn a_full_record_round_trips(store: &dyn TestTaskStore) {
    let (one, two) = (store.handle().await, store.handle().await);
    let id = task_id("round-trip");
    let (stored, _) = one
        .create(TaskRecord::new(&id, "client-ü", Some(600_000), Some(250)))
        .await
        .expect("create");
    let mut full = stored.record.clone();
    full.set_status(TaskStatus::InputRequired);
    full.input_requests = serde_json::from_value(json!({
        "elicit-1": {
            "method": "elicitation/create",
            "params": {"message": "Which region? ✓", "requestedSchema": {"type": "object", "properties": {}}}
        }
    }))
    .expect("input requests");
    full.request_state = Some("opaque-state\n\"quoted\"".into());
    full.input_responses = Some(object(
        json!({"elicit-1": {"action": "accept", "content": {"region": "eu"}}}),
    ));
    full.result = Some(object(json!({
        "content": [{"type": "text", "text": "big ".repeat(2000)}],
        "structuredContent": {"n": 1.5, "nested": [null, true, {"k": "v"}]},
        "isError": false
    })));
    full.error = Some(object(
        json!({"code": -32603, "message": "boom", "data": {"why": "x"}}),
    ));
    full.cancel_requested = true;
    full.runs = 3;
    one.replace(&full, &stored.version).await.expect("replace");

    let read = two.get(&id).await.expect("get").expect("stored");
    assert_eq!(read.record, full);
    assert!(read.record.input_requests.is_some());
    assert_eq!(read.record.expires_at_ms, stored.record.expires_at_ms);
    assert_eq!(read.record.task.poll_interval_ms, Some(250));
    one.delete(&id).await.expect("delete");
}

/// Defines one test per check of the [task store contract](crate::task_store_contract)
/// (in a module `task_store_contract`), each on the store `$store` builds: an
/// expression of a type that implements [`TestTaskStore`], evaluated afresh
/// in each test inside an `async` block (so it may `.await`), in the scope
/// of the macro call.
///
/// ```text
/// asyncmcp_testkit::task_store_contract_tests!(Sqlite::new().await);
/// ```
#[macro_export]
macro_rules! task_store_contract_tests {
    ($store:expr; $($check:ident),+ $(,)?) => {
        /// The task store contract of `asyncmcp_testkit::task_store_contract`.
        mod task_store_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $check() {
                    $crate::__private::block_on(async {
                        let store = $store;
                        $crate::task_store_contract::$check(&store).await;
                        $crate::task_store_contract::TestTaskStore::cleanup(&store).await;
                    });
                }
            )+
        }
    };
    ($store:expr $(,)?) => {
        $crate::task_store_contract_tests!($store;
            create_if_absent_returns_the_existing_record,
            concurrent_creates_make_one_record,
            get_of_an_unknown_id_is_none,
            replace_with_a_stale_version_conflicts,
            replace_of_a_missing_record_is_not_found,
            delete_removes_the_record,
            expired_records_read_as_absent,
            concurrent_updates_lose_nothing,
            racing_cancel_and_completion_keep_both,
            a_full_record_round_trips,
        );
    };
}

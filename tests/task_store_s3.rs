//! The S3 task store (feature `tasks-s3`) on LocalStack's S3: the task store
//! contract, each test in a bucket of its own (removed after), each handle
//! its own client (as replicas on different machines), and what only S3
//! shows: the key layout, `from_env`, and corrupt objects.
//!
//! Needs a LocalStack with S3 (`scripts/test.sh` starts one; see
//! `asyncmcp_testkit::aws`); fails, saying so, without one.

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::tasks::{S3TaskStore, TaskRecord, TaskStore, TaskStoreError};
use asyncmcp_testkit::aws::localstack;
use asyncmcp_testkit::aws::s3::{TestBucket, s3_client};
use asyncmcp_testkit::task_store_contract::TestTaskStore;
use aws_sdk_s3::primitives::ByteStream;

struct S3 {
    bucket: TestBucket,
}

impl S3 {
    async fn new() -> Self {
        Self {
            bucket: TestBucket::create("asyncmcp-tasks").await,
        }
    }
}

#[async_trait]
impl TestTaskStore for S3 {
    async fn handle(&self) -> Arc<dyn TaskStore> {
        let client = s3_client(localstack().await).await;
        Arc::new(S3TaskStore::new(client, &self.bucket.name, "tasks/"))
    }

    async fn cleanup(&self) {
        self.bucket.delete().await;
    }
}

asyncmcp_testkit::task_store_contract_tests!(S3::new().await);

/// One object per task at `<prefix><id>.json`, holding the record's JSON;
/// odd ids stay under the prefix.
#[tokio::test]
async fn one_object_per_task_under_the_prefix() {
    let bucket = TestBucket::create("asyncmcp-tasks-keys").await;
    let store = S3TaskStore::new(bucket.client.clone(), &bucket.name, "replica-set/tasks/");
    for id in ["task-1", "../task-2", "a/b"] {
        store
            .create(TaskRecord::new(id, "client", Some(600_000), None))
            .await
            .expect("create");
    }
    let mut keys = bucket.keys().await;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "replica-set/tasks/../task-2.json",
            "replica-set/tasks/a/b.json",
            "replica-set/tasks/task-1.json"
        ]
    );
    let object = bucket
        .client
        .get_object()
        .bucket(&bucket.name)
        .key("replica-set/tasks/task-1.json")
        .send()
        .await
        .expect("get");
    let body = object.body.collect().await.expect("body").into_bytes();
    let record: TaskRecord = serde_json::from_slice(&body).expect("the record's JSON");
    assert_eq!(record.id(), "task-1");
    bucket.delete().await;
}

/// `from_env` reads `AWS_ENDPOINT_URL` (as scripts/test.sh sets it) and
/// talks path-style to LocalStack.
#[tokio::test]
async fn from_env_reaches_localstack() {
    let bucket = TestBucket::create("asyncmcp-tasks-env").await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "set AWS_ENDPOINT_URL (and the test credentials) as scripts/test.sh does"
    );
    let store = S3TaskStore::from_env(&bucket.name, "").await;
    let (_, created) = store
        .create(TaskRecord::new("task-env", "client", None, None))
        .await
        .expect("create through from_env");
    assert!(created);
    assert!(store.get("task-env").await.expect("get").is_some());
    store.delete("task-env").await.expect("delete");
    bucket.delete().await;
}

/// An object that is not a record, or holds another task's record, is
/// reported as corrupt: anyone who can write the bucket can put anything
/// there, and the store neither panics nor serves it under the wrong id.
#[tokio::test]
async fn a_corrupt_object_is_an_error() {
    let bucket = TestBucket::create("asyncmcp-tasks-corrupt").await;
    let store = S3TaskStore::new(bucket.client.clone(), &bucket.name, "");
    let other =
        serde_json::to_vec(&TaskRecord::new("task-victim", "victim", None, None)).expect("json");
    for (id, body) in [
        ("task-garbage", b"{not json".to_vec()),
        ("task-forged", other),
    ] {
        bucket
            .client
            .put_object()
            .bucket(&bucket.name)
            .key(format!("{id}.json"))
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("put");
        match store.get(id).await {
            Err(TaskStoreError::Corrupt { id: corrupt, .. }) => assert_eq!(corrupt, id),
            other => panic!("{id}: {other:?}"),
        }
    }
    bucket.delete().await;
}

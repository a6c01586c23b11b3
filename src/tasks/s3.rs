//! [`S3TaskStore`]: task records as S3 objects (feature `tasks-s3`).
//!
//! For replicas on many machines: one JSON object per task at
//! `<prefix><task id>.json`, and S3's conditional writes as the
//! compare-and-swap. A record's version is its object's `ETag`:
//!
//! * [`create`](TaskStore::create) is a `PutObject` with `If-None-Match: *`
//!   (S3 answers 412 if the key exists). Over an expired record it is a
//!   `PutObject` with `If-Match: <its ETag>`, so two replicas creating over
//!   one expired record cannot both win.
//! * [`replace`](TaskStore::replace) is a `PutObject` with
//!   `If-Match: <ETag read>`: 412 (or S3's 409 for a conditional write that
//!   raced another) is a [`Conflict`](TaskStoreError::Conflict), 404 is
//!   [`NotFound`](TaskStoreError::NotFound).
//!
//! An `ETag` is a digest of the content, so a version repeats only when the
//! whole record does (timestamps included); a write over an identical record
//! loses nothing.
//!
//! Expired records read as absent but stay in the bucket until a task with
//! their id is created again or the bucket's lifecycle rule removes them
//! (docs/tasks.md shows one): deleting them on read would race a create.
//!
//! Needs S3 conditional writes (`If-Match` on `PutObject`, in AWS S3 since
//! November 2024; LocalStack 4.12 honours both headers).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use async_trait::async_trait;

use super::record::{TaskRecord, now_ms};
use super::store::{TaskStore, TaskStoreError, Version, Versioned};

/// The longest S3 key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// How many times [`create`](TaskStore::create) starts over when the object
/// it looked at changed under it (created, replaced or deleted meanwhile).
const CREATE_ATTEMPTS: usize = 8;

/// Task records as objects in an S3 bucket, shared by replicas on any number
/// of machines.
#[derive(Debug, Clone)]
pub struct S3TaskStore {
    client: Client,
    bucket: String,
    prefix: String,
}

/// What a conditional write's failure means.
enum Refused {
    /// 412 / 409: the condition did not hold.
    Precondition,
    /// 404: no object to match.
    Missing,
    /// Anything else.
    Other(String),
}

impl S3TaskStore {
    /// Records in `bucket` under `prefix` (e.g. `"tasks/"`; may be empty),
    /// through `client`.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// A store whose client is configured from the environment (aws-config:
    /// credentials, region, `AWS_ENDPOINT_URL`). With an endpoint override
    /// (LocalStack, MinIO) requests use path-style addressing.
    pub async fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut builder = aws_sdk_s3::config::Builder::from(&config);
        if config.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        Self::new(Client::from_conf(builder.build()), bucket, prefix)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of task `id`, if it can be one: not empty, no control
    /// characters, at most 1024 bytes with the prefix. Ids come from callers
    /// (`tasks/get`); any id stays under the prefix, as S3 keys are plain
    /// strings (`../` is not a path), and one that cannot be a key names no
    /// task.
    pub fn key(&self, id: &str) -> Option<String> {
        if id.is_empty() || id.chars().any(char::is_control) {
            return None;
        }
        let key = format!("{}{id}.json", self.prefix);
        (key.len() <= MAX_KEY_BYTES).then_some(key)
    }

    fn key_or_err(&self, id: &str) -> Result<String, TaskStoreError> {
        self.key(id).ok_or_else(|| {
            TaskStoreError::Backend(format!("task id of {} bytes makes no S3 key", id.len()))
        })
    }

    /// The object of task `id`, expired or not, with its `ETag`.
    async fn read(&self, id: &str) -> Result<Option<Versioned>, TaskStoreError> {
        let Some(key) = self.key(id) else {
            return Ok(None);
        };
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) => {
                if error.as_service_error().is_some_and(|e| e.is_no_such_key())
                    || status(&error) == Some(404)
                {
                    return Ok(None);
                }
                return Err(backend("GetObject", &key, &error));
            }
        };
        let etag = output
            .e_tag()
            .map(str::to_owned)
            .ok_or_else(|| TaskStoreError::Backend(format!("GetObject {key}: S3 sent no ETag")))?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| {
                TaskStoreError::Backend(format!("GetObject {key}: reading the body: {e}"))
            })?
            .into_bytes();
        let record: TaskRecord =
            serde_json::from_slice(&body).map_err(|e| TaskStoreError::Corrupt {
                id: id.to_owned(),
                reason: e.to_string(),
            })?;
        if record.id() != id {
            return Err(TaskStoreError::Corrupt {
                id: id.to_owned(),
                reason: format!("the object holds task {}", record.id()),
            });
        }
        Ok(Some(Versioned {
            record,
            version: Version(etag),
        }))
    }

    /// Writes `record` on condition: `If-None-Match: *` when `matching` is
    /// `None`, else `If-Match: <matching>`. Returns the new `ETag`.
    async fn put(
        &self,
        record: &TaskRecord,
        matching: Option<&Version>,
    ) -> Result<Version, Refused> {
        let key = self
            .key_or_err(record.id())
            .map_err(|e| Refused::Other(e.to_string()))?;
        let body = serde_json::to_vec(record)
            .map_err(|e| Refused::Other(format!("encoding task {}: {e}", record.id())))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let request = match matching {
            None => request.if_none_match("*"),
            Some(version) => request.if_match(&version.0),
        };
        match request.send().await {
            Ok(output) => output
                .e_tag()
                .map(|etag| Version(etag.to_owned()))
                .ok_or_else(|| Refused::Other(format!("PutObject {key}: S3 sent no ETag"))),
            Err(error) => {
                let code = error.code().unwrap_or_default();
                match status(&error) {
                    Some(412 | 409) => Err(Refused::Precondition),
                    _ if matches!(code, "PreconditionFailed" | "ConditionalRequestConflict") => {
                        Err(Refused::Precondition)
                    }
                    Some(404) => Err(Refused::Missing),
                    _ if code == "NoSuchKey" => Err(Refused::Missing),
                    _ => Err(Refused::Other(
                        backend("PutObject", &key, &error).to_string(),
                    )),
                }
            }
        }
    }
}

/// The HTTP status S3 answered with, if it answered.
fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error
        .raw_response()
        .map(|response| response.status().as_u16())
}

fn backend<E>(operation: &str, key: &str, error: &SdkError<E, HttpResponse>) -> TaskStoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or_default()
        ),
        None => aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
    };
    TaskStoreError::Backend(format!("S3 {operation} {key}: {detail}"))
}

impl Refused {
    /// The store error for a refusal the caller does not handle itself.
    fn into_error(self, id: &str) -> TaskStoreError {
        match self {
            Refused::Other(message) => TaskStoreError::Backend(message),
            Refused::Precondition => TaskStoreError::Conflict(id.to_owned()),
            Refused::Missing => TaskStoreError::NotFound(id.to_owned()),
        }
    }
}

#[async_trait]
impl TaskStore for S3TaskStore {
    async fn create(&self, record: TaskRecord) -> Result<(Versioned, bool), TaskStoreError> {
        let id = record.id().to_owned();
        for _ in 0..CREATE_ATTEMPTS {
            match self.put(&record, None).await {
                Ok(version) => return Ok((Versioned { record, version }, true)),
                Err(Refused::Precondition) => {}
                Err(other) => return Err(other.into_error(&id)),
            }
            // The key exists: a live record wins; an expired one is taken
            // over only if it is still the object just read.
            let Some(existing) = self.read(&id).await? else {
                continue; // deleted meanwhile: try creating again
            };
            if !existing.record.is_expired_at(now_ms()) {
                return Ok((existing, false));
            }
            match self.put(&record, Some(&existing.version)).await {
                Ok(version) => {
                    tracing::debug!(task = %id, "task store: created over an expired record");
                    return Ok((Versioned { record, version }, true));
                }
                Err(Refused::Precondition | Refused::Missing) => {}
                Err(other) => return Err(other.into_error(&id)),
            }
        }
        Err(TaskStoreError::Conflict(id))
    }

    async fn get(&self, id: &str) -> Result<Option<Versioned>, TaskStoreError> {
        Ok(self
            .read(id)
            .await?
            .filter(|stored| !stored.record.is_expired_at(now_ms())))
    }

    async fn replace(
        &self,
        record: &TaskRecord,
        expected: &Version,
    ) -> Result<Version, TaskStoreError> {
        match self.put(record, Some(expected)).await {
            Ok(version) => Ok(version),
            Err(refused) => Err(refused.into_error(record.id())),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), TaskStoreError> {
        let Some(key) = self.key(id) else {
            return Ok(());
        };
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(backend("DeleteObject", &key, &error)),
        }
    }
}

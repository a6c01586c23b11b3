//! [`StoreSpec`]: a task store named in one string, for command lines and
//! configuration files.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::memory::MemoryTaskStore;
use super::store::{TaskStore, TaskStoreError};

/// The forms [`StoreSpec`] accepts, for help texts and errors.
pub const STORE_FORMS: &str = "`memory` (this process only), `sqlite:PATH` (replicas on one machine; feature tasks-sqlite), `s3://BUCKET/PREFIX` (replicas anywhere; feature tasks-s3)";

/// Which task store to open: `memory`, `sqlite:PATH` or `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreSpec {
    /// [`MemoryTaskStore`]: this process only.
    Memory,
    /// An SQLite file (`SqliteTaskStore`), shared by the replicas of one
    /// machine, surviving restarts.
    Sqlite(PathBuf),
    /// Objects under `prefix` in an S3 bucket (`S3TaskStore`), with the AWS
    /// settings of the environment.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (may be empty; ends with `/` when not).
        prefix: String,
    },
}

/// A store string that names no store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task store {given:?}: accepted: {STORE_FORMS}")]
pub struct BadStoreSpec {
    given: String,
}

impl FromStr for StoreSpec {
    type Err = BadStoreSpec;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || BadStoreSpec {
            given: text.to_owned(),
        };
        if text == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad());
            }
            let prefix = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.to_owned()
            } else {
                format!("{prefix}/")
            };
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        Err(bad())
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl StoreSpec {
    /// Opens the store. A store whose feature this build lacks is an error
    /// saying which feature.
    pub async fn open(&self) -> Result<Arc<dyn TaskStore>, TaskStoreError> {
        match self {
            Self::Memory => Ok(Arc::new(MemoryTaskStore::new())),
            #[cfg(feature = "tasks-sqlite")]
            Self::Sqlite(path) => Ok(Arc::new(super::SqliteTaskStore::open(path).await?)),
            #[cfg(feature = "tasks-s3")]
            Self::S3 { bucket, prefix } => Ok(Arc::new(
                super::S3TaskStore::from_env(bucket.clone(), prefix.clone()).await,
            )),
            #[allow(unreachable_patterns)]
            other => Err(TaskStoreError::Backend(format!(
                "{other}: this build has no such store (features tasks-sqlite, tasks-s3)"
            ))),
        }
    }

    /// Whether replicas in other processes can share this store.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form_and_refuses_the_rest() {
        assert_eq!("memory".parse(), Ok(StoreSpec::Memory));
        assert_eq!(
            "sqlite:/tmp/t.db".parse(),
            Ok(StoreSpec::Sqlite("/tmp/t.db".into()))
        );
        assert_eq!(
            "s3://bucket/tasks".parse(),
            Ok(StoreSpec::S3 {
                bucket: "bucket".into(),
                prefix: "tasks/".into()
            })
        );
        assert_eq!(
            "s3://bucket".parse(),
            Ok(StoreSpec::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            })
        );
        for bad in ["", "redis://x", "sqlite:", "s3://", "s3:///x", "Memory"] {
            let error = bad.parse::<StoreSpec>().expect_err(bad);
            assert!(error.to_string().contains("accepted"), "{error}");
        }
        let spec: StoreSpec = "s3://b/p/".parse().unwrap_or(StoreSpec::Memory);
        assert_eq!(spec.to_string(), "s3://b/p/");
    }
}

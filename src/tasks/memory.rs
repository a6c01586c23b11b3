//! [`MemoryTaskStore`]: task records in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::record::TaskRecord;
use super::store::{TaskStore, TaskStoreError, Version, Versioned, is_live};

/// Task records in memory: the default store, for one process (or replicas
/// sharing one, as in tests). Lost when the process ends. Expired records
/// are dropped whenever a record is created.
///
/// Versions come from one counter for the whole store, so a record created
/// again under an id (after its predecessor expired or was deleted) never
/// reuses a version a writer may still hold for the old one.
#[derive(Debug, Clone, Default)]
pub struct MemoryTaskStore {
    records: Arc<Mutex<Records>>,
}

#[derive(Debug, Default)]
struct Records {
    by_id: HashMap<String, (TaskRecord, u64)>,
    last_version: u64,
}

impl Records {
    fn next_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }
}

impl MemoryTaskStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds, expired ones included.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether it holds no records.
    pub fn is_empty(&self) -> bool {
        self.lock().by_id.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave a half-written entry
        // (each write is one insert), so a poisoned lock is still usable.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn versioned(record: &TaskRecord, version: u64) -> Versioned {
    Versioned {
        record: record.clone(),
        version: Version(version.to_string()),
    }
}

#[async_trait]
impl TaskStore for MemoryTaskStore {
    async fn create(&self, record: TaskRecord) -> Result<(Versioned, bool), TaskStoreError> {
        let mut records = self.lock();
        records.by_id.retain(|_, (existing, _)| is_live(existing));
        if let Some((existing, version)) = records.by_id.get(record.id()) {
            return Ok((versioned(existing, *version), false));
        }
        let version = records.next_version();
        let stored = versioned(&record, version);
        records
            .by_id
            .insert(record.id().to_owned(), (record, version));
        Ok((stored, true))
    }

    async fn get(&self, id: &str) -> Result<Option<Versioned>, TaskStoreError> {
        Ok(self
            .lock()
            .by_id
            .get(id)
            .filter(|(record, _)| is_live(record))
            .map(|(record, version)| versioned(record, *version)))
    }

    async fn replace(
        &self,
        record: &TaskRecord,
        expected: &Version,
    ) -> Result<Version, TaskStoreError> {
        let mut records = self.lock();
        let next = records.last_version + 1;
        let Some((stored, version)) = records.by_id.get_mut(record.id()) else {
            return Err(TaskStoreError::NotFound(record.id().to_owned()));
        };
        if version.to_string() != expected.0 {
            return Err(TaskStoreError::Conflict(record.id().to_owned()));
        }
        *version = next;
        *stored = record.clone();
        records.last_version = next;
        Ok(Version(next.to_string()))
    }

    async fn delete(&self, id: &str) -> Result<(), TaskStoreError> {
        self.lock().by_id.remove(id);
        Ok(())
    }
}

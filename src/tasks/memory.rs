//! [`MemoryTaskStore`]: task records in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::record::TaskRecord;
use super::store::{TaskStore, TaskStoreError, Version, Versioned, is_live};

/// Task records in memory: the default store, for one process (or replicas
/// sharing one, as in tests). Lost when the process ends. Expired records
/// are dropped whenever a record is created.
#[derive(Debug, Clone, Default)]
pub struct MemoryTaskStore {
    records: Arc<Mutex<HashMap<String, (TaskRecord, u64)>>>,
}

impl MemoryTaskStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds, expired ones included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no records.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (TaskRecord, u64)>> {
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
        records.retain(|_, (existing, _)| is_live(existing));
        if let Some((existing, version)) = records.get(record.id()) {
            return Ok((versioned(existing, *version), false));
        }
        let stored = versioned(&record, 1);
        records.insert(record.id().to_owned(), (record, 1));
        Ok((stored, true))
    }

    async fn get(&self, id: &str) -> Result<Option<Versioned>, TaskStoreError> {
        Ok(self
            .lock()
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
        let Some((stored, version)) = records.get_mut(record.id()) else {
            return Err(TaskStoreError::NotFound(record.id().to_owned()));
        };
        if version.to_string() != expected.0 {
            return Err(TaskStoreError::Conflict(record.id().to_owned()));
        }
        *version += 1;
        *stored = record.clone();
        Ok(Version(version.to_string()))
    }

    async fn delete(&self, id: &str) -> Result<(), TaskStoreError> {
        self.lock().remove(id);
        Ok(())
    }
}

//! Counting SQS API calls, as an SDK interceptor.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Counts API call attempts (retries included) per operation name, e.g.
/// `SendMessageBatch`. Attach it to a client with
/// [`client_with_counter`](super::client_with_counter); it is how the project
/// measures API calls per tool call.
///
/// Cheap to clone: clones share the counts.
#[derive(Clone, Default)]
pub struct ApiCallCounter {
    inner: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    total: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl ApiCallCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts counted so far, all operations together.
    pub fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// Attempts of one operation counted so far.
    pub fn get(&self, operation: &str) -> u64 {
        self.counts().get(operation).copied().unwrap_or(0)
    }

    /// Attempts so far by operation name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts().clone()
    }

    /// Counts one attempt of `operation`.
    pub fn record(&self, operation: &str) {
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        *self.counts().entry(operation.to_owned()).or_insert(0) += 1;
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.inner
            .by_operation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for ApiCallCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCallCounter")
            .field("total", &self.total())
            .field("by_operation", &self.snapshot())
            .finish()
    }
}

impl Intercept for ApiCallCounter {
    fn name(&self) -> &'static str {
        "ApiCallCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        self.record(operation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let counter = ApiCallCounter::new();
        let clone = counter.clone();
        clone.record("SendMessageBatch");
        clone.record("SendMessageBatch");
        counter.record("ReceiveMessage");
        assert_eq!(counter.total(), 3);
        assert_eq!(counter.get("SendMessageBatch"), 2);
        assert_eq!(counter.get("DeleteQueue"), 0);
        assert_eq!(counter.snapshot().len(), 2);
    }
}

//! [`TaskSettings`]: which calls a queue server runs as tasks, and how.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::store::TaskStore;

/// How a [`QueueServer`](crate::QueueServer) runs tool calls as durable
/// tasks; set with [`QueueServerBuilder::tasks`](crate::server::QueueServerBuilder::tasks).
///
/// A `tools/call` becomes a task when its client declares the tasks
/// extension (`io.modelcontextprotocol/tasks`, in the request's client
/// capabilities) and the tool is one of [`tools`](Self::tools) (default:
/// every tool). Other callers, 2025-era clients among them, get ordinary
/// results. The tool itself needs no change: the server creates the task,
/// runs the call as usual and keeps its outcome in the store.
#[derive(Clone)]
pub struct TaskSettings {
    pub(crate) store: Arc<dyn TaskStore>,
    pub(crate) tools: Option<BTreeSet<String>>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) poll_interval: Duration,
    pub(crate) watch_interval: Duration,
    pub(crate) max_result_bytes: usize,
    pub(crate) max_input_rounds: usize,
}

impl fmt::Debug for TaskSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSettings")
            .field("store", &self.store)
            .field("tools", &self.tools)
            .field("ttl", &self.ttl)
            .field("poll_interval", &self.poll_interval)
            .field("watch_interval", &self.watch_interval)
            .field("max_result_bytes", &self.max_result_bytes)
            .finish_non_exhaustive()
    }
}

impl TaskSettings {
    /// Tasks kept in `store`, for every tool, with the defaults below.
    pub fn new(store: impl TaskStore) -> Self {
        Self::shared(Arc::new(store))
    }

    /// Tasks kept in a store shared with other code (or other servers of
    /// this process).
    pub fn shared(store: Arc<dyn TaskStore>) -> Self {
        Self {
            store,
            tools: None,
            ttl: Some(Duration::from_secs(60 * 60)),
            poll_interval: Duration::from_secs(1),
            watch_interval: Duration::from_millis(250),
            max_result_bytes: 1024 * 1024,
            max_input_rounds: rmcp::model::DEFAULT_MRTR_MAX_ROUNDS,
        }
    }

    /// Only calls of these tools become tasks (default: every tool).
    pub fn tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tools = Some(tools.into_iter().map(Into::into).collect());
        self
    }

    /// How long a task and its result are kept from its creation
    /// (`ttlMs`); a task still running then fails. Default 1 hour; `None`:
    /// kept until deleted (bounded by the broker's visibility ceiling while
    /// it runs: 12 hours on SQS).
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The polling interval suggested to callers (`pollIntervalMs`).
    /// Default 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How often the replica running a task reads its record for a
    /// `tasks/cancel` or `tasks/update` that reached another replica: the
    /// delay before a cancel stops the handler, and one store read per
    /// interval per running task. Default 250 ms.
    pub fn watch_interval(mut self, interval: Duration) -> Self {
        self.watch_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The largest result kept (serialized JSON); a larger one fails the
    /// task with an error saying so. Default 1 MiB.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// Whether calls of `tool` become tasks.
    pub fn covers(&self, tool: &str) -> bool {
        self.tools.as_ref().is_none_or(|tools| tools.contains(tool))
    }

    /// `ttlMs` of new tasks.
    pub(crate) fn ttl_ms(&self) -> Option<u64> {
        self.ttl
            .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    }

    /// `pollIntervalMs` of new tasks.
    pub(crate) fn poll_interval_ms(&self) -> u64 {
        u64::try_from(self.poll_interval.as_millis()).unwrap_or(u64::MAX)
    }
}

impl<S: TaskStore> From<S> for TaskSettings {
    fn from(store: S) -> Self {
        Self::new(store)
    }
}

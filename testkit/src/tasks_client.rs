//! The rmcp client of the task tests: a 2026-07-28 client that declares the
//! tasks extension (or not) and records the statuses `notifications/tasks`
//! announces to it.

use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, TaskStatus, TaskStatusNotificationParams,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};

/// A client handler declaring `io.modelcontextprotocol/tasks` when built by
/// [`declaring`](Self::declaring), nothing when built by
/// [`plain`](Self::plain). Clones share what was announced.
#[derive(Clone, Default)]
pub struct TasksClient {
    tasks: bool,
    announced: Arc<Mutex<Vec<TaskStatus>>>,
}

impl TasksClient {
    /// A client declaring the tasks extension.
    pub fn declaring() -> Self {
        Self {
            tasks: true,
            ..Self::default()
        }
    }

    /// A client declaring no extension (it gets ordinary results).
    pub fn plain() -> Self {
        Self::default()
    }

    /// [`declaring`](Self::declaring) when `tasks`, else [`plain`](Self::plain).
    pub fn new(tasks: bool) -> Self {
        if tasks {
            Self::declaring()
        } else {
            Self::plain()
        }
    }

    /// The statuses announced so far, in order.
    pub fn announced(&self) -> Vec<TaskStatus> {
        self.announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientHandler for TasksClient {
    async fn on_task_status(
        &self,
        params: TaskStatusNotificationParams,
        _context: NotificationContext<RoleClient>,
    ) {
        self.announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(params.task.status());
    }

    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.tasks {
            ClientCapabilities::builder().enable_tasks().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(
            capabilities,
            Implementation::new("asyncmcp-tasks-test", "1.0"),
        )
    }
}

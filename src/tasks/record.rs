//! One task's durable state and how it maps to the MCP wire types.

use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::model::{DetailedTask, InputRequests, JsonObject, Task, TaskPayload, TaskStatus};
use serde::{Deserialize, Serialize};

/// The durable state of one task, as every replica sees it.
///
/// Stored as JSON by every store, so a record written by one version of a
/// replica is read by the next (unknown fields are ignored, new ones default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The task's public fields (id, status, timestamps, ttl, poll interval).
    pub task: Task,
    /// Who may read and steer the task: the `ClientId` of the request that
    /// created it. `tasks/get|update|cancel` from anyone else is answered as
    /// if the task did not exist.
    pub owner: String,
    /// When the record may be discarded, in milliseconds since the Unix
    /// epoch (`createdAt + ttlMs`); `None`: kept until deleted.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// `tasks/cancel` was received; the replica running the task stops it.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Outstanding server-to-client requests while `input_required`.
    #[serde(default)]
    pub input_requests: Option<InputRequests>,
    /// The opaque `requestState` the tool returned with its input requests,
    /// echoed to it with the responses.
    #[serde(default)]
    pub request_state: Option<String>,
    /// Responses delivered by `tasks/update`, not yet taken by the runner.
    #[serde(default)]
    pub input_responses: Option<JsonObject>,
    /// The final result (`completed`).
    #[serde(default)]
    pub result: Option<JsonObject>,
    /// The JSON-RPC error (`failed`).
    #[serde(default)]
    pub error: Option<JsonObject>,
    /// How many times a replica started running the task (1 + takeovers).
    #[serde(default)]
    pub runs: u32,
}

impl TaskRecord {
    /// A new `working` task owned by `owner`, created now.
    pub fn new(
        task_id: impl Into<String>,
        owner: impl Into<String>,
        ttl_ms: Option<u64>,
        poll_interval_ms: Option<u64>,
    ) -> Self {
        let now = timestamp();
        let mut task = Task::new(task_id, TaskStatus::Working, now.clone(), now);
        task.ttl_ms = ttl_ms;
        task.poll_interval_ms = poll_interval_ms;
        Self {
            task,
            owner: owner.into(),
            expires_at_ms: ttl_ms.map(|ttl| now_ms().saturating_add(ttl)),
            cancel_requested: false,
            input_requests: None,
            request_state: None,
            input_responses: None,
            result: None,
            error: None,
            runs: 0,
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.task.task_id
    }

    /// The current status.
    pub fn status(&self) -> TaskStatus {
        self.task.status
    }

    /// Whether the task has ended (`completed`, `failed` or `cancelled`).
    pub fn is_terminal(&self) -> bool {
        self.task.status.is_terminal()
    }

    /// Whether the record outlived its `ttlMs` at `now_ms`.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// Sets the status (and the update time). Terminal states are final: a
    /// record that has ended keeps its status.
    pub fn set_status(&mut self, status: TaskStatus) {
        if self.is_terminal() {
            return;
        }
        self.task.status = status;
        if status != TaskStatus::InputRequired {
            self.input_requests = None;
            self.request_state = None;
        }
        self.touch();
    }

    /// Ends the task as `completed` with `result`.
    pub fn complete(&mut self, result: JsonObject) {
        if !self.is_terminal() {
            self.result = Some(result);
            self.set_status(TaskStatus::Completed);
        }
    }

    /// Ends the task as `failed` with the JSON-RPC `error`.
    pub fn fail(&mut self, error: JsonObject) {
        if !self.is_terminal() {
            self.error = Some(error);
            self.set_status(TaskStatus::Failed);
        }
    }

    /// Marks the last change as made now.
    pub fn touch(&mut self) {
        self.task.last_updated_at = timestamp();
    }

    /// The `DetailedTask` that `tasks/get` and `notifications/tasks` carry.
    pub fn detailed(&self) -> DetailedTask {
        let payload = match self.task.status {
            TaskStatus::Completed => TaskPayload::Completed {
                result: self.result.clone().unwrap_or_default(),
            },
            TaskStatus::Failed => TaskPayload::Failed {
                error: self.error.clone().unwrap_or_default(),
            },
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            TaskStatus::InputRequired => TaskPayload::InputRequired {
                input_requests: self.input_requests.clone().unwrap_or_default(),
            },
            _ => TaskPayload::Working,
        };
        DetailedTask::new(self.task.clone(), payload)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An ISO 8601 timestamp for the task's `createdAt` / `lastUpdatedAt`.
fn timestamp() -> String {
    rmcp::task_manager::current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terminal_status_is_final() {
        let mut record = TaskRecord::new("t", "c", Some(1_000), None);
        record.complete(json!({"content": []}).as_object().cloned().unwrap_or_default());
        record.fail(JsonObject::new());
        record.set_status(TaskStatus::Working);
        assert_eq!(record.status(), TaskStatus::Completed);
        assert!(record.error.is_none());
    }

    #[test]
    fn detailed_carries_the_payload_of_the_status() {
        let mut record = TaskRecord::new("t", "c", None, Some(500));
        record.fail(
            json!({"code": -32603, "message": "boom"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let wire = serde_json::to_value(record.detailed()).unwrap_or_default();
        assert_eq!(wire["status"], "failed");
        assert_eq!(wire["error"]["message"], "boom");
        assert_eq!(wire["taskId"], "t");
    }

    #[test]
    fn expiry_follows_ttl() {
        let record = TaskRecord::new("t", "c", Some(10), None);
        let at = record.expires_at_ms.unwrap_or(0);
        assert!(!record.is_expired_at(at - 1));
        assert!(record.is_expired_at(at));
        assert!(!TaskRecord::new("t", "c", None, None).is_expired_at(u64::MAX));
    }
}

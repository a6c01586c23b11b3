//! `asyncmcp call --task`: following a task to its end.
//!
//! A server that runs a call as a task (MCP Tasks, `io.modelcontextprotocol/
//! tasks`) answers `tools/call` at once with the task, and the work goes on
//! without the caller. [`follow`] says `task <id>` on stderr, polls
//! `tasks/get` at the task's `pollIntervalMs` (kept between
//! [`MIN_INTERVAL`] and [`MAX_INTERVAL`]; [`DEFAULT_INTERVAL`] when the server
//! suggests none) and shows its status message (see
//! [`Progress::status`]) until the task ends:
//!
//! * `completed`: its result is the call's, printed as an ordinary call's
//!   (exit 0, or 3 for `isError: true`);
//! * `failed`: the JSON-RPC error it failed with (exit 1);
//! * `cancelled` (by the server, or by another request): said (exit 1);
//! * `input_required`: the command cannot answer the server's requests; it
//!   names them (with their text when stdin is a terminal, where a person
//!   reads), cancels the task and fails (exit 1) rather than leave it
//!   waiting until its TTL for input no one else can give: a task belongs
//!   to the connection that started it.
//!
//! A stop while following (SIGINT, SIGTERM, `--timeout`) sends
//! `tasks/cancel`, waits a little for the task to say `cancelled`, and
//! exits with the stop's code (130, 143, 124). A second signal stops the
//! wait.
//!
//! # What a hostile server could do
//!
//! Everything in a task comes from the server. Its id, status message and
//! input requests are cut short and escaped before they reach the terminal;
//! its polling interval is bounded both ways, so it can neither make the
//! command poll in a tight loop nor stall it past [`MAX_INTERVAL`]
//! between polls (and `--timeout` bounds the whole); an answer about
//! another task, a result that is not a tool result and an error that is not
//! a JSON-RPC error fail the command instead of being taken as the call's.

use std::io::IsTerminal;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, CancelTaskParams, CreateTaskResult, ErrorData, GetTaskParams, GetTaskResult,
    InputRequests, JsonObject, Task, TaskPayload, TaskStatus,
};
use rmcp::service::ServiceError;
use rmcp::{Peer, RoleClient};

use crate::exit::Failure;
use crate::output;
use crate::progress::{Progress, ProgressClient};
use crate::session::{Session, Stop, request_failure};

/// The shortest interval between two polls, whatever the server suggests.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval between two polls, whatever the server suggests.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(5);
/// The interval when the server suggests none.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one `tasks/get` may go unanswered before it counts as failed.
const POLL_LIMIT: Duration = Duration::from_secs(30);
/// Polls in a row that may fail (no answer, an internal error of the
/// server or its store) before the command gives up.
const POLL_ATTEMPTS: u32 = 3;
/// How long cancelling a task (and seeing it cancelled) may take.
const CANCEL_LIMIT: Duration = Duration::from_secs(5);
/// The most characters of a task id shown.
const MAX_ID: usize = 200;

/// Follows the task `created` to its end; its result is the call's.
pub(crate) async fn follow(
    session: &mut Session<ProgressClient>,
    created: CreateTaskResult,
    progress: &Progress,
) -> Result<CallToolResult, Failure> {
    let peer = session.peer();
    let task_id = created.task.task_id.clone();
    let shown_id = shown(&task_id);
    progress.note(&format!("asyncmcp: task {shown_id}"));
    tracing::info!(task = %shown_id, "the call runs as a task; polling it");
    let mut seen = Seen::default();
    seen.show(&created.task, progress);
    let mut every = interval(created.task.poll_interval_ms);
    let mut failed_polls = 0;
    loop {
        let polled = session
            .run(async {
                tokio::time::sleep(every).await;
                tokio::time::timeout(POLL_LIMIT, peer.get_task(GetTaskParams::new(&task_id))).await
            })
            .await;
        let polled = match polled {
            Ok(polled) => polled,
            Err(stop) => {
                cancel(session, &peer, &task_id, progress, &stop_reason(stop)).await;
                return Err(session.failure(stop));
            }
        };
        let got = match polled {
            Ok(Ok(got)) => got,
            Ok(Err(error)) if !transient(&error) => {
                return Err(request_failure("tasks/get", error));
            }
            failed => {
                failed_polls += 1;
                let why = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {POLL_LIMIT:?}"),
                };
                tracing::warn!(task = %shown_id, attempt = failed_polls, %why, "tasks/get failed");
                if failed_polls >= POLL_ATTEMPTS {
                    return Err(Failure::other(anyhow::anyhow!(
                        "polling task {shown_id} failed {POLL_ATTEMPTS} times in a row, last: {why}"
                    )));
                }
                continue;
            }
        };
        failed_polls = 0;
        let GetTaskResult { task, .. } = got;
        if task.task.task_id != task_id {
            return Err(Failure::other(anyhow::anyhow!(
                "asked for task {shown_id}, the server answered about task {}",
                shown(&task.task.task_id)
            )));
        }
        every = interval(task.task.poll_interval_ms);
        seen.show(&task.task, progress);
        match task.payload {
            TaskPayload::Working => {}
            TaskPayload::Completed { result } => return tool_result(&shown_id, result),
            TaskPayload::Failed { error } => return Err(task_error(&shown_id, error)),
            TaskPayload::Cancelled => {
                return Err(Failure::other(anyhow::anyhow!(
                    "task {shown_id} was cancelled (not by this command)"
                )));
            }
            TaskPayload::InputRequired { input_requests } => {
                let asked = asked_for(&input_requests);
                if std::io::stdin().is_terminal() {
                    progress.finish();
                    for line in &asked.details {
                        eprintln!("asyncmcp: task {shown_id} asks: {line}");
                    }
                }
                cancel(
                    session,
                    &peer,
                    &task_id,
                    progress,
                    "it asked for input this command cannot give",
                )
                .await;
                return Err(Failure::other(anyhow::anyhow!(
                    "task {shown_id} needs input that `asyncmcp call` cannot give ({}), so it was \
                     cancelled; call the tool from an MCP client that answers such requests, or \
                     with arguments that need no input",
                    asked.summary
                )));
            }
            _ => {
                return Err(Failure::other(anyhow::anyhow!(
                    "task {shown_id} is in a state this command does not know"
                )));
            }
        }
    }
}

/// The polling interval for a task suggesting `suggested` milliseconds.
pub(crate) fn interval(suggested: Option<u64>) -> Duration {
    suggested
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// The status last shown, so that a line is written only on a change.
#[derive(Default)]
struct Seen(Option<(TaskStatus, Option<String>)>);

impl Seen {
    fn show(&mut self, task: &Task, progress: &Progress) {
        let now = (task.status, task.status_message.clone());
        if self.0.as_ref() != Some(&now) {
            progress.status(status_name(task.status), task.status_message.as_deref());
            self.0 = Some(now);
        }
    }
}

/// The wire name of `status`.
fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Working => "working",
        TaskStatus::InputRequired => "input_required",
        TaskStatus::Completed => "completed",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
        _ => "unknown",
    }
}

/// A task id as shown: cut short, safe for a terminal.
fn shown(task_id: &str) -> String {
    let id: String = task_id.chars().take(MAX_ID).collect();
    output::printable(&id).replace(['\n', '\t'], " ")
}

/// Whether a failed `tasks/get` may succeed when polled again: no answer,
/// or the server's internal error (its store unavailable); not an unknown
/// task (`invalid params`: expired, or never ours) or an unknown method.
fn transient(error: &ServiceError) -> bool {
    match error {
        ServiceError::McpError(error) => error.code == rmcp::model::ErrorCode::INTERNAL_ERROR,
        ServiceError::Timeout { .. } | ServiceError::TransportSend(_) => true,
        _ => false,
    }
}

/// The result of a completed task: a tool result.
fn tool_result(task: &str, result: JsonObject) -> Result<CallToolResult, Failure> {
    serde_json::from_value(serde_json::Value::Object(result)).map_err(|error| {
        Failure::other(anyhow::anyhow!(
            "task {task} completed with something other than a tool result: {error}"
        ))
    })
}

/// The failure of a failed task: its JSON-RPC error, as a call's.
fn task_error(task: &str, error: JsonObject) -> Failure {
    match serde_json::from_value::<ErrorData>(serde_json::Value::Object(error.clone())) {
        Ok(error) => Failure::JsonRpc {
            method: "tools/call",
            error,
        },
        Err(_) => Failure::other(anyhow::anyhow!(
            "task {task} failed with an error that is not a JSON-RPC error: {}",
            output::json_line(&error)
        )),
    }
}

/// What a task waiting for input asked for.
struct Asked {
    /// `key (method)`, comma-separated.
    summary: String,
    /// One line per request: its key, method and params, safe to show.
    details: Vec<String>,
}

fn asked_for(requests: &InputRequests) -> Asked {
    let mut names = Vec::new();
    let mut details = Vec::new();
    for (key, request) in requests {
        let value = serde_json::to_value(request).unwrap_or_default();
        let method = value["method"].as_str().unwrap_or("an unknown request");
        let key = shown(key);
        let method = shown(method);
        names.push(format!("{key} ({method})"));
        let params = output::json_line(&value["params"]);
        let params: String = params.chars().take(1000).collect();
        details.push(format!("{key}: {method} {params}"));
    }
    Asked {
        summary: if names.is_empty() {
            "no request named".to_owned()
        } else {
            names.join(", ")
        },
        details,
    }
}

/// Why the command stopped, for the log.
fn stop_reason(stop: Stop) -> String {
    match stop {
        Stop::Signal(signal) => format!("the caller was stopped by {signal}"),
        Stop::Deadline => "the caller's --timeout passed".to_owned(),
    }
}

/// Sends `tasks/cancel` for `task_id` and waits (within [`CANCEL_LIMIT`],
/// until a signal) for the task to end, saying how it went on stderr.
async fn cancel(
    session: &mut Session<ProgressClient>,
    peer: &Peer<RoleClient>,
    task_id: &str,
    progress: &Progress,
    why: &str,
) {
    let shown_id = shown(task_id);
    tracing::info!(task = %shown_id, why, "cancelling the task");
    let cancelling = async {
        peer.cancel_task(CancelTaskParams::new(task_id)).await?;
        let mut every = MIN_INTERVAL;
        loop {
            tokio::time::sleep(every).await;
            let got = peer.get_task(GetTaskParams::new(task_id)).await?;
            let status = got.task.status();
            if status.is_terminal() {
                return Ok::<_, ServiceError>(status);
            }
            every = interval(got.task.task.poll_interval_ms).min(Duration::from_millis(500));
        }
    };
    let said = match session
        .until_signal(tokio::time::timeout(CANCEL_LIMIT, cancelling))
        .await
    {
        Ok(Ok(Ok(TaskStatus::Cancelled))) => format!("task {shown_id} cancelled"),
        Ok(Ok(Ok(status))) => format!(
            "task {shown_id} ended {} before the cancel reached it",
            status_name(status)
        ),
        Ok(Ok(Err(error))) => {
            format!("task {shown_id} may still be running: tasks/cancel failed: {error}")
        }
        Ok(Err(_)) => format!(
            "task {shown_id}: cancel sent, but it was not seen cancelled within {CANCEL_LIMIT:?}"
        ),
        Err(signal) => format!("task {shown_id} may still be running: {signal} again"),
    };
    progress.finish();
    progress.note(&format!("asyncmcp: {}", output::printable(&said)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_polling_interval_is_bounded_both_ways() {
        assert_eq!(interval(None), DEFAULT_INTERVAL);
        assert_eq!(interval(Some(0)), MIN_INTERVAL);
        assert_eq!(interval(Some(250)), Duration::from_millis(250));
        assert_eq!(interval(Some(u64::MAX)), MAX_INTERVAL);
    }

    #[test]
    fn a_completed_task_gives_the_tool_result_and_a_failed_one_its_error() {
        let result = json!({"content": [{"type": "text", "text": "done"}], "isError": true});
        let result = tool_result("t", result.as_object().cloned().unwrap_or_default())
            .expect("a tool result");
        assert_eq!(result.is_error, Some(true));
        let not_a_result = json!({"content": "nope"});
        assert!(tool_result("t", not_a_result.as_object().cloned().unwrap_or_default()).is_err());

        let error = json!({"code": -32603, "message": "boom"});
        match task_error("t", error.as_object().cloned().unwrap_or_default()) {
            Failure::JsonRpc { method, error } => {
                assert_eq!(method, "tools/call");
                assert_eq!(error.message, "boom");
            }
            other => panic!("{other:?}"),
        }
        let odd = json!({"why": "\u{1b}[2J"});
        let failure = task_error("t", odd.as_object().cloned().unwrap_or_default()).to_string();
        assert!(failure.contains("not a JSON-RPC error"), "{failure}");
    }

    #[test]
    fn what_a_server_says_is_made_safe_and_short() {
        let hostile = format!("\u{1b}]0;owned\u{7}{}", "x".repeat(500));
        let id = shown(&hostile);
        assert!(!id.chars().any(char::is_control), "{id:?}");
        assert!(id.len() < 260, "{}", id.len());

        let requests: InputRequests = serde_json::from_value(json!({
            "name\u{1b}[2J": {"method": "elicitation/create",
                     "params": {"message": "Your name?\u{9b}",
                                "requestedSchema": {"type": "object", "properties": {}}}}
        }))
        .expect("input requests");
        let asked = asked_for(&requests);
        assert!(
            asked.summary.contains("(elicitation/create)"),
            "{}",
            asked.summary
        );
        for text in asked.details.iter().chain([&asked.summary]) {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert!(
            asked.details[0].contains("Your name?"),
            "{:?}",
            asked.details
        );
    }

    #[test]
    fn only_errors_that_may_pass_are_polled_again() {
        let internal = ServiceError::McpError(ErrorData::internal_error("store down", None));
        assert!(transient(&internal));
        let unknown = ServiceError::McpError(ErrorData::invalid_params("unknown task: t", None));
        assert!(!transient(&unknown));
    }
}

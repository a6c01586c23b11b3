//! Durable tasks on the server: which requests are task business, and the
//! task methods answered from the store.
//!
//! * A `tools/call` whose client declares the tasks extension, of a tool the
//!   [`TaskSettings`] cover, runs as a task (`run.rs`): the caller is
//!   answered at once with the task, the call runs on this replica while its
//!   request stays hidden (heartbeat), and its outcome goes to the store;
//!   only then is the request acked.
//! * `tasks/get`, `tasks/update` and `tasks/cancel` are answered here, by
//!   whichever replica receives them, from the store. A cancel or an input
//!   response is written to the task's record; the replica running the task
//!   reads the record every [`watch_interval`](TaskSettings::watch_interval)
//!   and acts on it. (A control message to the runner would need an address
//!   per replica; the store is already shared, and a read per interval per
//!   running task is cheap beside the work a task does.)
//!
//! # What a forged message can do
//!
//! A task belongs to the caller that created it (its `ClientId`, or its
//! session). The task methods of any other caller are answered as for an
//! unknown task, so knowing (or computing) a task id gives nothing; with
//! signed requests the caller cannot be forged either. A forged `tools/call`
//! creates a task owned by whoever it claims to be, as it would run an
//! ordinary call. Input responses are accepted only while the task asks for
//! input, and only under the keys it asked with.

mod run;

use rmcp::model::{
    ClientRequest, ErrorCode, GetMeta, GetTaskResult, JsonRpcRequest, RequestId,
    TASKS_EXTENSION_ID, TaskAckResult, TaskStatus,
};
use serde_json::{Value, json};

use super::ServiceFactory;
use super::dispatch::Shared;
use super::request::{Finished, Reply, settle_final};
use crate::tasks::{TaskRecord, TaskSettings, TaskStoreError, store};
use crate::wire;

pub(super) use run::TaskCall;

/// What a request is to the task machinery.
pub(super) enum TaskBusiness {
    /// A call to run as a task.
    Call,
    /// `tasks/get`, `tasks/update` or `tasks/cancel`.
    Method,
    /// Nothing: served as usual.
    None,
}

/// Whether `request` is task business under `settings`.
pub(super) fn classify(
    request: &JsonRpcRequest<ClientRequest>,
    settings: &TaskSettings,
) -> TaskBusiness {
    match &request.request {
        ClientRequest::CallToolRequest(call)
            if declares_tasks(&request.request) && settings.covers(&call.params.name) =>
        {
            TaskBusiness::Call
        }
        ClientRequest::GetTaskRequest(_)
        | ClientRequest::UpdateTaskRequest(_)
        | ClientRequest::CancelTaskRequest(_) => TaskBusiness::Method,
        _ => TaskBusiness::None,
    }
}

/// Whether the request's client capabilities declare the tasks extension
/// (only 2026-07-28 requests carry capabilities in `_meta`).
fn declares_tasks(request: &ClientRequest) -> bool {
    request
        .get_meta()
        .client_capabilities()
        .is_some_and(|caps| caps.supports_tasks())
}

/// Whether the call's `_meta` asks for the task's status changes to be sent
/// to its reply address as `notifications/tasks` (`"dev.asyncmcp/taskNotifications": true`).
///
/// SEP-2663 delivers them on a `subscriptions/listen` stream filtered by task
/// ids, which rmcp 3.9 cannot express and a stateless queue server cannot
/// hold open; the reply address is where this caller already takes the
/// call's messages, so an opt-in on the call itself is enough. Forging it
/// only sends more messages to the address the request names, which its
/// replies go to anyway.
pub(super) fn wants_notifications(request: &JsonRpcRequest<ClientRequest>) -> bool {
    request
        .request
        .get_meta()
        .get(crate::tasks::NOTIFICATIONS_META_KEY)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Removes the tasks extension from the request's client capabilities, so
/// the handler sees a plain call and returns a plain result: the server
/// owns the task, not the handler.
pub(super) fn hide_tasks_extension(request: &mut ClientRequest) {
    let meta = request.get_meta_mut();
    if let Some(mut caps) = meta.client_capabilities() {
        if let Some(extensions) = caps.extensions.as_mut() {
            extensions.remove(TASKS_EXTENSION_ID);
        }
        meta.set_client_capabilities(caps);
    }
}

/// The JSON-RPC error for a task that does not exist for this caller
/// (SEP-2663: invalid params).
fn unknown_task(id: &RequestId, task_id: &str) -> Value {
    wire::error_reply(
        Some(id),
        ErrorCode::INVALID_PARAMS,
        &format!("unknown task: {task_id}"),
    )
}

impl<F: ServiceFactory> Shared<F> {
    /// Answers `tasks/get`, `tasks/update` or `tasks/cancel` from the store,
    /// for tasks `owner` created.
    pub(super) async fn answer_task_method(
        &self,
        settings: &TaskSettings,
        mut reply: Reply,
        owner: &str,
        request: &JsonRpcRequest<ClientRequest>,
    ) -> Finished {
        let id = &request.id;
        let store = settings.store();
        let response = match &request.request {
            ClientRequest::GetTaskRequest(get) => {
                let task_id = &get.params.task_id;
                match store.get(task_id).await {
                    Ok(Some(found)) if found.record.owner == owner => {
                        result(id, &GetTaskResult::new(found.record.detailed()))
                    }
                    Ok(_) => unknown_task(id, task_id),
                    Err(error) => store_error(id, &error),
                }
            }
            ClientRequest::UpdateTaskRequest(update) => {
                let task_id = &update.params.task_id;
                let responses = update.params.input_responses.clone();
                let changed = store::update(store.as_ref(), task_id, |record| {
                    accept_inputs(record, owner, &responses)
                })
                .await;
                match changed {
                    Ok(record) if record.owner == owner => result(id, &TaskAckResult::new()),
                    Ok(_) | Err(TaskStoreError::NotFound(_)) => unknown_task(id, task_id),
                    Err(error) => store_error(id, &error),
                }
            }
            ClientRequest::CancelTaskRequest(cancel) => {
                let task_id = &cancel.params.task_id;
                let changed = store::update(store.as_ref(), task_id, |record| {
                    if record.owner != owner || record.is_terminal() || record.cancel_requested {
                        return false;
                    }
                    record.cancel_requested = true;
                    record.touch();
                    true
                })
                .await;
                match changed {
                    Ok(record) if record.owner == owner => {
                        tracing::info!(task = %task_id, "task cancel requested");
                        result(id, &TaskAckResult::new())
                    }
                    Ok(_) | Err(TaskStoreError::NotFound(_)) => unknown_task(id, task_id),
                    Err(error) => store_error(id, &error),
                }
            }
            _ => wire::error_reply(Some(id), ErrorCode::METHOD_NOT_FOUND, "not a task method"),
        };
        Finished::answered(settle_final(reply.send_value(&response).await))
    }
}

/// Fails the task of a request that is being dead-lettered (if it has
/// one), with the reason.
pub(super) async fn fail_dead_lettered(
    settings: &TaskSettings,
    owner: &str,
    request_id: &RequestId,
    body: &[u8; 16],
    reason: &str,
) {
    let task_id = crate::tasks::id::derive(owner, request_id, body);
    let error = serde_json::json!({
        "code": ErrorCode::INTERNAL_ERROR.0,
        "message": format!("the task's request was dead-lettered: {reason}"),
    });
    let error = error.as_object().cloned().unwrap_or_default();
    let failed = store::update(settings.store().as_ref(), &task_id, |record| {
        if record.is_terminal() {
            return false;
        }
        record.fail(error.clone());
        true
    })
    .await;
    match failed {
        Ok(_) | Err(TaskStoreError::NotFound(_)) => {}
        Err(error) => {
            tracing::warn!(task = %task_id, %error, "could not fail a dead-lettered task")
        }
    }
}

/// Takes `responses` into `record` if `owner` owns it and it is waiting
/// for input; only keys it asked for are kept. Returns whether it changed.
fn accept_inputs(
    record: &mut TaskRecord,
    owner: &str,
    responses: &rmcp::model::InputResponses,
) -> bool {
    if record.owner != owner || record.status() != TaskStatus::InputRequired {
        return false;
    }
    let Some(asked) = &record.input_requests else {
        return false;
    };
    let pending = record.input_responses.get_or_insert_with(Default::default);
    let mut changed = false;
    for (key, value) in responses {
        if asked.contains_key(key) && !pending.contains_key(key) {
            pending.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    if changed {
        record.touch();
    }
    changed
}

/// A JSON-RPC response carrying `result`.
fn result<T: serde::Serialize>(id: &RequestId, result: &T) -> Value {
    match serde_json::to_value(result) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => wire::error_reply(
            Some(id),
            ErrorCode::INTERNAL_ERROR,
            &format!("cannot encode the task: {error}"),
        ),
    }
}

/// The JSON-RPC error for a store that failed.
fn store_error(id: &RequestId, error: &TaskStoreError) -> Value {
    tracing::warn!(%error, "task store failed");
    wire::error_reply(
        Some(id),
        ErrorCode::INTERNAL_ERROR,
        &format!("task store unavailable: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ClientJsonRpcMessage;

    fn request(body: &str) -> JsonRpcRequest<ClientRequest> {
        match serde_json::from_str(body) {
            Ok(ClientJsonRpcMessage::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    const WITH_TASKS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}}}"#;

    #[test]
    fn only_calls_of_covered_tools_from_clients_declaring_tasks_are_tasks() {
        let settings = TaskSettings::new(crate::tasks::MemoryTaskStore::new()).tools(["slow"]);
        assert!(matches!(
            classify(&request(WITH_TASKS), &settings),
            TaskBusiness::Call
        ));
        let other_tool = WITH_TASKS.replace("\"slow\"", "\"echo\"");
        assert!(matches!(
            classify(&request(&other_tool), &settings),
            TaskBusiness::None
        ));
        let legacy = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#;
        assert!(matches!(
            classify(&request(legacy), &settings),
            TaskBusiness::None
        ));
        let get = r#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"t"}}"#;
        assert!(matches!(
            classify(&request(get), &settings),
            TaskBusiness::Method
        ));
    }

    #[test]
    fn the_handler_does_not_see_the_tasks_extension() {
        let mut call = request(WITH_TASKS);
        hide_tasks_extension(&mut call.request);
        assert!(!declares_tasks(&call.request));
        // The rest of the capabilities and the version stay.
        assert!(call.request.get_meta().client_capabilities().is_some());
        assert!(call.request.get_meta().protocol_version().is_some());
    }

    #[test]
    fn inputs_are_taken_only_from_the_owner_while_asked_and_under_asked_keys() {
        let mut record = TaskRecord::new("t", "owner", None, None);
        let asked: rmcp::model::InputRequests =
            serde_json::from_value(json!({"name": {"method": "elicitation/create", "params": {"message": "?", "requestedSchema": {"type": "object", "properties": {}}}}}))
                .unwrap_or_default();
        let responses: rmcp::model::InputResponses =
            serde_json::from_value(json!({"name": {"action": "accept"}, "other": {}}))
                .unwrap_or_default();
        assert!(
            !accept_inputs(&mut record, "owner", &responses),
            "not waiting for input"
        );
        record.input_requests = Some(asked);
        record.set_status(TaskStatus::InputRequired);
        assert!(!accept_inputs(&mut record, "intruder", &responses));
        assert!(accept_inputs(&mut record, "owner", &responses));
        let taken = record.input_responses.clone().unwrap_or_default();
        assert!(taken.contains_key("name") && !taken.contains_key("other"));
        assert!(
            !accept_inputs(&mut record, "owner", &responses),
            "already answered"
        );
    }
}

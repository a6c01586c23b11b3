//! Running one tool call as a task, from the caller's task handle to the
//! outcome in the store.
//!
//! 1. The task's record is created under an id derived from the request
//!    (`tasks::id`), or found: a redelivery after a replica died finds it
//!    and runs the work again under the same id (a takeover).
//! 2. The caller is answered with the task (`CreateTaskResult`) the first
//!    time only; that answer is the request's final response, kept for
//!    replay like any other.
//! 3. The call runs through a fresh service, as an ordinary call (the
//!    handler does not see the tasks extension), while the request is kept
//!    hidden by the heartbeat. Progress notifications become the task's
//!    status message (at most one store write a second). The record is read
//!    every watch interval: a `tasks/cancel` that reached any replica stops
//!    the handler.
//! 4. A handler that needs input (`InputRequiredResult`, SEP-2322) puts the
//!    task in `input_required` with its requests; once `tasks/update` has
//!    answered them all, the call runs again with the responses and its
//!    `requestState`. A takeover of a task waiting for input goes on
//!    waiting: the state is in the record, not in this process.
//! 5. The outcome (result, error or cancellation) is written to the record;
//!    only then is the request acked. A write that fails leaves the request
//!    for a redelivery, which runs the work again.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, CreateTaskResult, ErrorCode,
    InitializeRequestParams, InputRequiredResult, JsonObject, JsonRpcRequest, ServerJsonRpcMessage,
    ServerNotification, ServerResult, TaskStatus,
};
use rmcp::service::serve_directly_with_ct;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{hide_tasks_extension, result};
use crate::queue::{Inbox, Receipt};
use crate::server::ServiceFactory;
use crate::server::dispatch::Shared;
use crate::server::heartbeat::Heartbeat;
use crate::server::request::{Finished, Outcome, Reply, settle_final};
use crate::server::transport::RequestTransport;
use crate::tasks::record::now_ms;
use crate::tasks::{TaskRecord, TaskSettings, TaskStore, TaskStoreError, id, store};

/// The least time between two status messages written from progress.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How long a handler stopped from outside may take to return.
const DRAIN: Duration = Duration::from_secs(1);

/// How often writing the outcome is tried before the request is left for
/// a redelivery.
const OUTCOME_ATTEMPTS: u32 = 3;

/// What running a call as a task needs besides the request.
pub(in crate::server) struct TaskCall<'a> {
    pub(in crate::server) settings: &'a TaskSettings,
    /// Who owns the task: the caller's `ClientId`, else its session.
    pub(in crate::server) owner: &'a str,
    /// Digest of the request's body (part of its identity).
    pub(in crate::server) body: [u8; 16],
    pub(in crate::server) reply: Reply,
    /// Where status changes go as `notifications/tasks`, if the caller
    /// asked for them.
    pub(in crate::server) notify: Option<Reply>,
    pub(in crate::server) peer_info: Option<InitializeRequestParams>,
    pub(in crate::server) inbox: Arc<dyn Inbox>,
    pub(in crate::server) receipt: Receipt,
    pub(in crate::server) received: Instant,
    /// Cancelled by `notifications/cancelled` for the request.
    pub(in crate::server) cancelled: CancellationToken,
}

/// How the work of a task ended.
enum End {
    Completed(JsonObject),
    Failed(JsonObject),
    Cancelled,
    /// Shutdown ran out of grace: the request goes back to the queue and
    /// another replica takes the task over.
    Abandoned,
    /// The store failed while the task ran.
    Store(TaskStoreError),
}

/// How one run of the handler ended.
enum Round {
    Ended(End),
    NeedsInput(InputRequiredResult),
}

/// What the loops watching a task share.
struct Watch<'a> {
    store: &'a dyn TaskStore,
    /// Where status changes are announced, if anywhere.
    notify: Option<&'a tokio::sync::Mutex<Reply>>,
    task_id: &'a str,
    every: Duration,
    deadline: Instant,
    deadline_reason: String,
    cancelled: &'a CancellationToken,
    abandon: &'a CancellationToken,
}

impl<F: ServiceFactory> Shared<F> {
    /// Runs `request` (a `tools/call`) as a task: see the module docs.
    pub(in crate::server) async fn run_task(
        &self,
        mut request: JsonRpcRequest<ClientRequest>,
        call: TaskCall<'_>,
    ) -> Finished {
        let TaskCall {
            settings,
            owner,
            body,
            mut reply,
            notify,
            peer_info,
            inbox,
            receipt,
            received,
            cancelled,
        } = call;
        let store = settings.store().as_ref();
        let task_id = id::derive(owner, &request.id, &body);
        let fresh = TaskRecord::new(
            &task_id,
            owner,
            settings.ttl_ms(),
            Some(settings.poll_interval_ms()),
        );
        let record = match store.create(fresh).await {
            Ok((stored, _)) => stored.record,
            Err(error) => return store_failed(&task_id, &error),
        };
        if record.is_terminal() {
            // Its outcome is stored: an earlier run ended but was not acked.
            tracing::info!(task = %task_id, status = ?record.status(), "task already ended; request settled");
            return Finished::answered(Outcome::Answered);
        }
        if record.runs == 0 {
            let handle = result(&request.id, &CreateTaskResult::new(record.task.clone()));
            let outcome = settle_final(reply.send_value(&handle).await);
            if outcome != Outcome::Answered {
                // Not marked as run: the redelivery answers the caller again.
                return reply.finished(outcome);
            }
        } else {
            tracing::info!(task = %task_id, runs = record.runs, "taking over a task whose replica stopped");
        }
        let record = match store::update(store, &task_id, |r| {
            if r.is_terminal() {
                return false;
            }
            r.runs += 1;
            if r.status() != TaskStatus::InputRequired {
                r.set_status(TaskStatus::Working);
            }
            true
        })
        .await
        {
            Ok(record) => record,
            Err(error) => return store_failed(&task_id, &error),
        };
        tracing::info!(task = %task_id, run = record.runs, "task running");

        let heartbeat = Heartbeat::new(inbox, receipt, received, self.config.visibility_ceiling);
        let (deadline, deadline_reason) = deadline(&record, heartbeat.ends_at());
        let notifier = notify.map(tokio::sync::Mutex::new);
        let watch = Watch {
            store,
            notify: notifier.as_ref(),
            task_id: &task_id,
            every: settings.watch_interval,
            deadline,
            deadline_reason,
            cancelled: &cancelled,
            abandon: &self.abandon,
        };
        hide_tasks_extension(&mut request.request);
        let drive = self.drive(request, peer_info, settings, &record, &watch);
        let end = tokio::select! {
            end = drive => end,
            () = heartbeat.keep_hidden() => unreachable!("the heartbeat runs until dropped"),
        };
        let end = match end {
            End::Completed(result) => bounded(result, settings.max_result_bytes),
            other => other,
        };
        let outcome = match end {
            End::Abandoned => {
                tracing::info!(task = %task_id, "task abandoned at shutdown; another replica takes it over");
                return reply.finished(Outcome::Abandoned);
            }
            End::Store(error) => return store_failed(&task_id, &error),
            end => end,
        };
        match write_outcome(store, &task_id, outcome).await {
            Ok(record) => {
                tracing::info!(task = %task_id, status = ?record.status(), "task ended");
                announce(&watch, &record).await;
                reply.finished(Outcome::Answered)
            }
            Err(error) => store_failed(&task_id, &error),
        }
    }

    /// Runs the handler, round after round of input, until the task ends.
    async fn drive(
        &self,
        request: JsonRpcRequest<ClientRequest>,
        peer_info: Option<InitializeRequestParams>,
        settings: &TaskSettings,
        record: &TaskRecord,
        watch: &Watch<'_>,
    ) -> End {
        let mut request = request;
        let mut waiting =
            (record.status() == TaskStatus::InputRequired).then(|| record.request_state.clone());
        for _ in 0..=settings.max_input_rounds {
            if let Some(state) = waiting.take() {
                match wait_for_inputs(watch).await {
                    Ok(responses) => set_inputs(&mut request, responses, state),
                    Err(end) => return end,
                }
            }
            match self.round(request.clone(), peer_info.clone(), watch).await {
                Round::Ended(end) => return end,
                Round::NeedsInput(needed) => {
                    let asked = needed.input_requests.unwrap_or_default();
                    if asked.is_empty() {
                        // Only state to echo: run again at once.
                        set_inputs(&mut request, JsonObject::new(), needed.request_state);
                        continue;
                    }
                    let state = needed.request_state;
                    let written = store::update(watch.store, watch.task_id, |r| {
                        if r.is_terminal() {
                            return false;
                        }
                        r.input_requests = Some(asked.clone());
                        r.request_state = state.clone();
                        r.input_responses = None;
                        r.set_status(TaskStatus::InputRequired);
                        true
                    })
                    .await;
                    match written {
                        Ok(record) => announce(watch, &record).await,
                        Err(error) => return End::Store(error),
                    }
                    tracing::info!(task = %watch.task_id, "task waiting for input");
                    waiting = Some(state);
                }
            }
        }
        End::Failed(error_object(
            ErrorCode::INTERNAL_ERROR,
            &format!(
                "the tool asked for input more than {} times",
                settings.max_input_rounds
            ),
        ))
    }

    /// One run of the handler through a fresh service.
    async fn round(
        &self,
        request: JsonRpcRequest<ClientRequest>,
        peer_info: Option<InitializeRequestParams>,
        watch: &Watch<'_>,
    ) -> Round {
        let (transport, mut emitted) =
            RequestTransport::new(ClientJsonRpcMessage::Request(request));
        let service_ct = CancellationToken::new();
        let _running = serve_directly_with_ct(
            self.factory.make(),
            transport,
            peer_info,
            service_ct.clone(),
        );
        let _stop_service = service_ct.clone().drop_guard();
        let round = self.watch_round(&mut emitted, watch).await;
        if matches!(
            round,
            Round::Ended(End::Cancelled | End::Abandoned | End::Failed(_))
        ) {
            // Stopped from outside: let the handler see its cancellation and
            // answer into the channel, rather than fail sending into a
            // closed one.
            service_ct.cancel();
            let _ = tokio::time::timeout(DRAIN, async { while emitted.recv().await.is_some() {} })
                .await;
        }
        round
    }

    /// Watches one run of the handler: what it emits, the record, and the
    /// reasons to stop.
    async fn watch_round(
        &self,
        emitted: &mut tokio::sync::mpsc::Receiver<ServerJsonRpcMessage>,
        watch: &Watch<'_>,
    ) -> Round {
        let mut tick = tokio::time::interval(watch.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status: Option<Instant> = None;
        loop {
            tokio::select! {
                message = emitted.recv() => match message {
                    Some(ServerJsonRpcMessage::Response(response)) => return outcome_of(response.result),
                    Some(ServerJsonRpcMessage::Error(error)) => {
                        return Round::Ended(End::Failed(to_object(&error.error)));
                    }
                    Some(ServerJsonRpcMessage::Notification(notification)) => {
                        if let ServerNotification::ProgressNotification(progress) = notification.notification
                            && last_status.is_none_or(|at| at.elapsed() >= STATUS_EVERY)
                        {
                            last_status = Some(Instant::now());
                            let params = progress.params;
                            let message = params.message.unwrap_or_else(|| match params.total {
                                Some(total) => format!("{}/{}", params.progress, total),
                                None => params.progress.to_string(),
                            });
                            set_status_message(watch, message).await;
                        }
                    }
                    Some(_) => {}
                    None => {
                        return Round::Ended(End::Failed(error_object(
                            ErrorCode::INTERNAL_ERROR,
                            "Internal error: the handler ended without a response",
                        )));
                    }
                },
                _ = tick.tick() => match cancel_requested(watch).await {
                    Ok(true) => return Round::Ended(End::Cancelled),
                    Ok(false) => {}
                    Err(end) => return Round::Ended(end),
                },
                end = interrupted(watch) => return Round::Ended(end),
            }
        }
    }
}

/// What the handler's final response means for the task.
fn outcome_of(result: ServerResult) -> Round {
    match result {
        ServerResult::InputRequiredResult(needed) => Round::NeedsInput(needed),
        ServerResult::CreateTaskResult(_) => Round::Ended(End::Failed(error_object(
            ErrorCode::INTERNAL_ERROR,
            "the tool returned a task of its own; with a task store the server makes the task, and the tool returns its result",
        ))),
        other => Round::Ended(End::Completed(to_object(&other))),
    }
}

/// Sends the record's state as `notifications/tasks` where the caller asked
/// for it. A notification that cannot be sent is only logged: polling still
/// finds the state.
async fn announce(watch: &Watch<'_>, record: &TaskRecord) {
    let Some(notify) = watch.notify else {
        return;
    };
    let params = match serde_json::to_value(record.detailed()) {
        Ok(params) => params,
        Err(error) => {
            tracing::warn!(task = %watch.task_id, %error, "task notification not encoded");
            return;
        }
    };
    let notification = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/tasks",
        "params": params,
    });
    if let Err(error) = notify.lock().await.send_value(&notification).await {
        tracing::warn!(task = %watch.task_id, %error, "task notification not sent");
    }
}

/// Waits until every input the task asked for is answered; returns them.
async fn wait_for_inputs(watch: &Watch<'_>) -> Result<JsonObject, End> {
    let mut tick = tokio::time::interval(watch.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            end = interrupted(watch) => return Err(end),
        }
        let Some(found) = watch.store.get(watch.task_id).await.map_err(End::Store)? else {
            return Err(End::Store(TaskStoreError::NotFound(
                watch.task_id.to_owned(),
            )));
        };
        let record = found.record;
        if record.cancel_requested {
            return Err(End::Cancelled);
        }
        let asked = record.input_requests.unwrap_or_default();
        let given = record.input_responses.unwrap_or_default();
        if asked.keys().all(|key| given.contains_key(key)) {
            // Taken: the task works again, with the responses.
            let taken = store::update(watch.store, watch.task_id, |r| {
                if r.is_terminal() {
                    return false;
                }
                r.input_responses = None;
                r.set_status(TaskStatus::Working);
                true
            })
            .await
            .map_err(End::Store)?;
            if taken.is_terminal() {
                return Err(End::Cancelled);
            }
            tracing::info!(task = %watch.task_id, "task input received");
            return Ok(given);
        }
    }
}

/// Resolves when the task must stop for a reason other than its store:
/// the caller cancelled the request, shutdown ran out of grace, or the
/// deadline passed.
async fn interrupted(watch: &Watch<'_>) -> End {
    tokio::select! {
        () = watch.cancelled.cancelled() => {
            // `notifications/cancelled` for the call: a cancel of the task.
            let _ = store::update(watch.store, watch.task_id, |r| {
                r.cancel_requested = true;
                true
            })
            .await;
            End::Cancelled
        }
        () = watch.abandon.cancelled() => End::Abandoned,
        () = tokio::time::sleep_until(watch.deadline) => End::Failed(error_object(
            crate::server::REQUEST_TIMEOUT,
            &watch.deadline_reason,
        )),
    }
}

/// Whether a `tasks/cancel` reached the record.
async fn cancel_requested(watch: &Watch<'_>) -> Result<bool, End> {
    match watch.store.get(watch.task_id).await {
        Ok(Some(found)) => Ok(found.record.cancel_requested),
        Ok(None) => Err(End::Store(TaskStoreError::NotFound(
            watch.task_id.to_owned(),
        ))),
        // A store that fails once is read again at the next tick.
        Err(error) => {
            tracing::warn!(task = %watch.task_id, %error, "could not read the task record");
            Ok(false)
        }
    }
}

async fn set_status_message(watch: &Watch<'_>, message: String) {
    let written = store::update(watch.store, watch.task_id, |r| {
        if r.is_terminal() {
            return false;
        }
        r.task.status_message = Some(message.clone());
        r.touch();
        true
    })
    .await;
    if let Err(error) = written {
        tracing::warn!(task = %watch.task_id, %error, "could not write the task's status message");
    }
}

/// The request of the next round: the responses and the echoed state.
fn set_inputs(
    request: &mut JsonRpcRequest<ClientRequest>,
    responses: JsonObject,
    state: Option<String>,
) {
    if let ClientRequest::CallToolRequest(call) = &mut request.request {
        let params: &mut CallToolRequestParams = &mut call.params;
        params.input_responses = Some(responses.into_iter().collect());
        params.request_state = state;
    }
}

/// When the task must end: its TTL, or before the visibility ceiling.
fn deadline(record: &TaskRecord, ceiling_at: Instant) -> (Instant, String) {
    let ceiling = (
        ceiling_at,
        "the task neared the broker's visibility ceiling (how long a received request can be kept hidden) and was ended before it".to_owned(),
    );
    match record.expires_at_ms {
        Some(at) => {
            let left = Duration::from_millis(at.saturating_sub(now_ms()));
            let ttl_at = Instant::now() + left;
            if ttl_at < ceiling.0 {
                let ttl = record.task.ttl_ms.unwrap_or_default();
                (ttl_at, format!("the task outlived its ttlMs of {ttl} ms"))
            } else {
                ceiling
            }
        }
        None => ceiling,
    }
}

/// A result too large to keep fails the task, saying so.
fn bounded(result: JsonObject, limit: usize) -> End {
    let size = serde_json::to_vec(&result)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > limit {
        return End::Failed(error_object(
            ErrorCode::INTERNAL_ERROR,
            &format!(
                "the task's result of {size} bytes exceeds the task store's limit of {limit} bytes"
            ),
        ));
    }
    End::Completed(result)
}

/// Writes how the task ended, trying a few times.
async fn write_outcome(
    store: &dyn TaskStore,
    task_id: &str,
    end: End,
) -> Result<TaskRecord, TaskStoreError> {
    let mut attempt = 0;
    loop {
        let written = store::update(store, task_id, |r| {
            match &end {
                End::Completed(result) => r.complete(result.clone()),
                End::Failed(error) => r.fail(error.clone()),
                End::Cancelled => r.set_status(TaskStatus::Cancelled),
                End::Abandoned | End::Store(_) => return false,
            }
            true
        })
        .await;
        attempt += 1;
        match written {
            Err(TaskStoreError::Backend(_)) if attempt < OUTCOME_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

/// The request is left for a redelivery: the task's state could not be
/// read or written.
fn store_failed(task_id: &str, error: &TaskStoreError) -> Finished {
    tracing::warn!(task = %task_id, %error, "task store failed; request left for redelivery");
    Finished {
        outcome: Outcome::ReplyFailed,
        response: None,
        redeliver_reason: None,
        reply_error: Some(format!("task store: {error}")),
    }
}

fn to_object<T: serde::Serialize>(value: &T) -> JsonObject {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(other) => JsonObject::from_iter([("value".to_owned(), other)]),
        Err(error) => error_object(ErrorCode::INTERNAL_ERROR, &error.to_string()),
    }
}

fn error_object(code: ErrorCode, message: &str) -> JsonObject {
    JsonObject::from_iter([
        ("code".to_owned(), serde_json::json!(code.0)),
        ("message".to_owned(), serde_json::json!(message)),
    ])
}

//! Durable tasks on the in-memory broker: a call from a client declaring the
//! tasks extension becomes a task polled to its end; other clients get
//! ordinary results; `tasks/cancel` through another replica stops the
//! handler; `input_required` round trips through `tasks/update`; a task whose
//! replica stopped is taken over under the same id; and another caller can
//! neither read nor steer a task. (Across processes, with SIGKILL and the
//! SQLite and S3 stores: `tests/tasks_replicas.rs`.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::tasks::{MemoryTaskStore, TaskSettings, TaskStore};
use asyncmcp::{MemoryBroker, QueueClientTransport, QueueServer};
use asyncmcp_testkit::task_tools::{TaskToolStats, TaskTools};
use asyncmcp_testkit::tasks_client::TasksClient;
use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult,
    InputResponses, ProtocolVersion, TaskPayload, TaskStatus, UpdateTaskParams,
};
use rmcp::service::{ClientLifecycleMode, RunningService};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One broker, a request queue per replica, one task store shared by all.
struct World {
    broker: MemoryBroker,
    store: MemoryTaskStore,
    stats: Arc<TaskToolStats>,
}

struct Replica {
    queue: String,
    stop: CancellationToken,
    running: JoinHandle<()>,
}

impl World {
    fn new() -> Self {
        Self {
            broker: MemoryBroker::new(),
            store: MemoryTaskStore::new(),
            stats: Arc::default(),
        }
    }

    /// A replica on `queue` (created if new), with `grace` to finish calls
    /// at shutdown.
    fn replica(&self, queue: &str, grace: Duration) -> Replica {
        self.replica_with(queue, grace, 16)
    }

    /// A replica running at most `max_in_flight` requests at once.
    fn replica_with(&self, queue: &str, grace: Duration, max_in_flight: usize) -> Replica {
        self.replica_full(queue, grace, max_in_flight, None)
    }

    /// A replica dead-lettering requests delivered more than `dead_letter.1`
    /// times to `dead_letter.0`.
    fn replica_full(
        &self,
        queue: &str,
        grace: Duration,
        max_in_flight: usize,
        dead_letter: Option<(&str, u32)>,
    ) -> Replica {
        let address = self.broker.create_queue(
            queue,
            MemoryQueueOptions::default().with_visibility_timeout(Duration::from_secs(1)),
        );
        let inbox = self.broker.inbox(&address).expect("request queue");
        let stop = CancellationToken::new();
        let settings = TaskSettings::new(self.store.clone())
            .tools(["work", "greet"])
            .poll_interval(Duration::from_millis(100))
            .watch_interval(Duration::from_millis(50));
        let mut builder = QueueServer::builder(inbox, self.broker.outbox());
        if let Some((address, max)) = dead_letter {
            builder = builder.dead_letter(address, max);
        }
        let running = builder
            .wait(Duration::from_millis(200))
            .shutdown_grace(grace)
            .max_in_flight(max_in_flight)
            .tasks(settings)
            .build(TaskTools::factory(self.stats.clone()))
            .spawn(stop.clone());
        Replica {
            queue: address,
            stop,
            running,
        }
    }

    /// A client of `queue` with its own reply queue and `client_id`.
    async fn client(
        &self,
        queue: &str,
        client_id: &str,
        tasks: bool,
    ) -> RunningService<RoleClient, TasksClient> {
        let transport = QueueClientTransport::builder(queue)
            .client_id(client_id)
            .wait(Duration::from_millis(200))
            .memory(&self.broker)
            .expect("client transport");
        rmcp::service::serve_client_with_lifecycle(
            TasksClient::new(tasks),
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover")
    }
}

impl Replica {
    async fn stop(self) {
        self.stop.cancel();
        self.running.await.expect("server task");
    }
}

fn call(tool: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_owned()).with_arguments(
        arguments
            .as_object()
            .cloned()
            .expect("arguments are an object"),
    )
}

/// Starts `tool` as a task; returns its id.
async fn start_task(
    client: &RunningService<RoleClient, TasksClient>,
    tool: &str,
    arguments: serde_json::Value,
) -> String {
    match client.call_tool_once(call(tool, arguments)).await {
        Ok(CallToolResponse::Task(created)) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            created.task.task_id
        }
        other => panic!("expected a task, got {other:?}"),
    }
}

async fn get(client: &RunningService<RoleClient, TasksClient>, task_id: &str) -> GetTaskResult {
    client
        .get_task(GetTaskParams::new(task_id))
        .await
        .expect("tasks/get")
}

/// Polls until the task leaves `working`; returns what it became and the
/// statuses seen on the way.
async fn poll_until_not_working(
    client: &RunningService<RoleClient, TasksClient>,
    task_id: &str,
    limit: Duration,
) -> (GetTaskResult, Vec<TaskStatus>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let polled = get(client, task_id).await;
        let status = polled.task.status();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if status != TaskStatus::Working {
            return (polled, seen);
        }
        assert!(
            started.elapsed() < limit,
            "task {task_id} still working after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn result_text(polled: &GetTaskResult) -> String {
    match &polled.task.payload {
        TaskPayload::Completed { result } => result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        other => panic!("not completed: {other:?}"),
    }
}

#[tokio::test]
async fn a_call_from_a_client_declaring_tasks_is_polled_to_its_result() {
    let world = World::new();
    let replica = world.replica("tasks-a", Duration::from_secs(1));
    let client = world.client(&replica.queue, "caller", true).await;

    // The server declares the extension, whatever the handler declares.
    let declared = client
        .peer_info()
        .map(|info| info.capabilities.supports_tasks());
    assert_eq!(declared, Some(true));
    let task_id = start_task(&client, "work", json!({"ms": 1500})).await;
    // Progress while it works becomes the task's status message.
    let mut message = None;
    for _ in 0..40 {
        let polled = get(&client, &task_id).await;
        if let Some(text) = polled.task.task.status_message.clone() {
            message = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message = message.expect("a status message from the tool's progress");
    assert!(message.contains("of 1500 ms"), "status message: {message}");

    let (done, seen) = poll_until_not_working(&client, &task_id, Duration::from_secs(10)).await;
    assert_eq!(seen, vec![TaskStatus::Working, TaskStatus::Completed]);
    assert!(result_text(&done).starts_with("worked 1500 ms"));
    // The record is in the store, owned by the caller.
    let stored = world
        .store
        .get(&task_id)
        .await
        .expect("store")
        .expect("record");
    // Owned by the connection's ClientId (`<client id>.<nonce>`).
    assert!(
        stored.record.owner.starts_with("caller."),
        "owner {}",
        stored.record.owner
    );
    assert_eq!(stored.record.runs, 1);
    assert_eq!(world.stats.works_completed.load(Ordering::SeqCst), 1);
    client.cancel().await.expect("close");
    replica.stop().await;
}

#[tokio::test]
async fn clients_without_the_extension_and_tools_not_covered_get_ordinary_results() {
    let world = World::new();
    let replica = world.replica("tasks-plain", Duration::from_secs(1));
    let plain = world.client(&replica.queue, "plain", false).await;
    let result = plain
        .call_tool(call("work", json!({"ms": 100})))
        .await
        .expect("ordinary call");
    assert!(format!("{:?}", result.content).contains("worked 100 ms"));

    let declaring = world.client(&replica.queue, "declaring", true).await;
    match declaring
        .call_tool_once(call("echo", json!({"text": "hi"})))
        .await
    {
        Ok(CallToolResponse::Complete(result)) => {
            assert!(format!("{:?}", result.content).contains("hi"));
        }
        other => panic!("echo is not a task tool: {other:?}"),
    }
    assert!(world.store.is_empty(), "no task was created");
    plain.cancel().await.expect("close");
    declaring.cancel().await.expect("close");
    replica.stop().await;
}

#[tokio::test]
async fn a_cancel_through_another_replica_stops_the_handler_within_a_second() {
    let world = World::new();
    // Two replicas on one queue, each running one request at a time: while
    // one runs the task it receives nothing, so the caller's `tasks/get`
    // and `tasks/cancel` are served by the other.
    let runner = world.replica_with("tasks-cancel", Duration::from_secs(1), 1);
    let other = world.replica_with("tasks-cancel", Duration::from_secs(1), 1);
    let to_runner = world.client(&runner.queue, "caller", true).await;
    let to_other = &to_runner;
    let task_id = start_task(&to_runner, "work", json!({"ms": 30_000})).await;
    while world.stats.works_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The other replica reads and cancels it from the store.
    assert_eq!(
        get(to_other, &task_id).await.task.status(),
        TaskStatus::Working
    );
    to_other
        .cancel_task(CancelTaskParams::new(&task_id))
        .await
        .expect("tasks/cancel");
    let acked = Instant::now();
    let (ended, _) = poll_until_not_working(to_other, &task_id, Duration::from_secs(5)).await;
    assert_eq!(ended.task.status(), TaskStatus::Cancelled);
    let stopped = world
        .stats
        .cancelled_at
        .lock()
        .ok()
        .and_then(|at| *at)
        .expect("the handler saw its cancellation");
    let delay = stopped.saturating_duration_since(acked);
    eprintln!("the cancel reached the handler {delay:?} after its acknowledgement");
    assert!(
        delay < Duration::from_secs(1),
        "handler stopped {delay:?} after the cancel"
    );
    assert_eq!(world.stats.works_completed.load(Ordering::SeqCst), 0);
    to_runner.cancel().await.expect("close");
    runner.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn input_required_round_trips_through_tasks_update() {
    let world = World::new();
    let replica = world.replica("tasks-input", Duration::from_secs(1));
    let client = world.client(&replica.queue, "caller", true).await;

    let task_id = start_task(&client, "greet", json!({})).await;
    let (asking, _) = poll_until_not_working(&client, &task_id, Duration::from_secs(5)).await;
    let TaskPayload::InputRequired { input_requests } = &asking.task.payload else {
        panic!("expected input_required, got {:?}", asking.task.payload);
    };
    assert!(input_requests.contains_key("name"));

    let responses: InputResponses = serde_json::from_value(json!({
        "name": {"action": "accept", "content": {"name": "Ada"}}
    }))
    .expect("responses");
    client
        .update_task(UpdateTaskParams::new(&task_id, responses))
        .await
        .expect("tasks/update");
    let mut polled = get(&client, &task_id).await;
    let started = Instant::now();
    while !polled.task.status().is_terminal() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no result after the update"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        polled = get(&client, &task_id).await;
    }
    assert_eq!(result_text(&polled), "Hello, Ada!");
    assert_eq!(world.stats.greet_rounds.load(Ordering::SeqCst), 2);
    client.cancel().await.expect("close");
    replica.stop().await;
}

#[tokio::test]
async fn a_task_whose_replica_stopped_is_taken_over_under_the_same_id() {
    let world = World::new();
    // No grace: shutdown gives the running task back to the queue at once.
    let first = world.replica("tasks-takeover", Duration::ZERO);
    let client = world.client(&first.queue, "caller", true).await;
    let task_id = start_task(&client, "work", json!({"ms": 1000})).await;
    while world.stats.works_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queue = first.queue.clone();
    first.stop().await;
    assert_eq!(get_from_store(&world, &task_id).await, TaskStatus::Working);

    let second = world.replica("tasks-takeover", Duration::from_secs(1));
    assert_eq!(second.queue, queue);
    let (done, _) = poll_until_not_working(&client, &task_id, Duration::from_secs(10)).await;
    assert!(result_text(&done).starts_with("worked 1000 ms"));
    let stored = world
        .store
        .get(&task_id)
        .await
        .expect("store")
        .expect("record");
    assert_eq!(stored.record.runs, 2, "run once, then taken over once");
    assert_eq!(world.stats.works_started.load(Ordering::SeqCst), 2);
    client.cancel().await.expect("close");
    second.stop().await;
}

async fn get_from_store(world: &World, task_id: &str) -> TaskStatus {
    world
        .store
        .get(task_id)
        .await
        .expect("store")
        .expect("record")
        .record
        .status()
}

#[tokio::test]
async fn another_caller_can_neither_read_nor_steer_a_task() {
    let world = World::new();
    let replica = world.replica("tasks-owner", Duration::from_secs(1));
    let owner = world.client(&replica.queue, "owner", true).await;
    let intruder = world.client(&replica.queue, "intruder", true).await;

    let task_id = start_task(&owner, "work", json!({"ms": 1500})).await;
    let read = intruder.get_task(GetTaskParams::new(&task_id)).await;
    let error = format!(
        "{:?}",
        read.expect_err("another caller's task is unknown to it")
    );
    assert!(error.contains("unknown task"), "{error}");
    let cancel = intruder.cancel_task(CancelTaskParams::new(&task_id)).await;
    assert!(cancel.is_err(), "another caller cannot cancel it");

    let (done, _) = poll_until_not_working(&owner, &task_id, Duration::from_secs(10)).await;
    assert_eq!(
        done.task.status(),
        TaskStatus::Completed,
        "the intruder's cancel had no effect"
    );
    owner.cancel().await.expect("close");
    intruder.cancel().await.expect("close");
    replica.stop().await;
}

#[tokio::test]
async fn a_task_whose_request_is_dead_lettered_fails_with_the_reason() {
    let world = World::new();
    let dlq = world
        .broker
        .create_queue("tasks-dlq", MemoryQueueOptions::default());
    // Allowed one delivery: the run given back at shutdown is the last.
    let first = world.replica_full("tasks-poison", Duration::ZERO, 16, Some((&dlq, 1)));
    let client = world.client(&first.queue, "caller", true).await;
    let task_id = start_task(&client, "work", json!({"ms": 5000})).await;
    while world.stats.works_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;
    let second = world.replica_full("tasks-poison", Duration::from_secs(1), 16, Some((&dlq, 1)));
    let (ended, _) = poll_until_not_working(&client, &task_id, Duration::from_secs(10)).await;
    let TaskPayload::Failed { error } = &ended.task.payload else {
        panic!("expected failed, got {:?}", ended.task.payload);
    };
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("dead-lettered"), "{message}");
    assert_eq!(
        world.broker.depth(&dlq).0,
        1,
        "the request is in the dead-letter queue"
    );
    assert_eq!(
        world.stats.works_started.load(Ordering::SeqCst),
        1,
        "not run again"
    );
    client.cancel().await.expect("close");
    second.stop().await;
}

#[tokio::test]
async fn status_changes_are_announced_to_a_caller_that_asks() {
    let world = World::new();
    let replica = world.replica("tasks-announce", Duration::from_secs(1));
    let client = world.client(&replica.queue, "caller", true).await;
    let mut params = call("greet", json!({}));
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.insert("dev.asyncmcp/taskNotifications".to_owned(), json!(true));
    params.meta = Some(meta);
    let task_id = match client.call_tool_once(params).await {
        Ok(CallToolResponse::Task(created)) => created.task.task_id,
        other => panic!("expected a task, got {other:?}"),
    };
    let announced = client.service().clone();
    let seen = |status: TaskStatus| announced.announced().contains(&status);
    let started = Instant::now();
    while !seen(TaskStatus::InputRequired) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "input_required not announced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let responses: InputResponses =
        serde_json::from_value(json!({"name": {"action": "accept", "content": {"name": "Lin"}}}))
            .expect("responses");
    client
        .update_task(UpdateTaskParams::new(&task_id, responses))
        .await
        .expect("tasks/update");
    while !seen(TaskStatus::Completed) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "completion not announced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        announced.announced(),
        vec![TaskStatus::InputRequired, TaskStatus::Completed]
    );
    assert_eq!(result_text(&get(&client, &task_id).await), "Hello, Lin!");

    // Without the opt-in nothing is announced.
    let quiet = world.client(&replica.queue, "quiet", true).await;
    let quiet_task = start_task(&quiet, "work", json!({"ms": 100})).await;
    let (done, _) = poll_until_not_working(&quiet, &quiet_task, Duration::from_secs(5)).await;
    assert_eq!(done.task.status(), TaskStatus::Completed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quiet.service().announced(), []);
    client.cancel().await.expect("close");
    quiet.cancel().await.expect("close");
    replica.stop().await;
}

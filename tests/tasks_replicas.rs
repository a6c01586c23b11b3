//! Durable tasks across processes, on LocalStack SQS with the SQLite store:
//! two `tasks_server` replicas on one queue and one store; the replica
//! running a 60 s task is killed with SIGKILL mid-task; the other takes the
//! task over under the same id, and the caller's `tasks/get` polling sees
//! `working` then `completed`, with the survivor's result.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use asyncmcp::QueueClientTransport;
use asyncmcp::queue::sqs;
use asyncmcp::tasks::{SqliteTaskStore, TaskStore};
use asyncmcp_testkit::aws;
use asyncmcp_testkit::tasks_client::TasksClient;
use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetTaskParams, ProtocolVersion, TaskPayload,
    TaskStatus,
};
use rmcp::service::{ClientLifecycleMode, RunningService};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// The example binary `name`, built now.
fn example(name: &str) -> PathBuf {
    asyncmcp_testkit::support::example_binary(name)
}

/// Starts a replica and waits for its READY line.
async fn replica(ls: &aws::LocalStack, queue: &str, store: &str) -> Child {
    let mut child = tokio::process::Command::new(example("tasks_server"))
        .args(["--queue-url", queue, "--store", store, "--pollers", "1"])
        .envs(ls.aws_env())
        .env("RUST_LOG", "warn,asyncmcp::server=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start tasks_server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("tasks_server printed nothing within 60 s")
        .expect("read stdout");
    assert!(
        ready.is_some_and(|line| line.starts_with("READY")),
        "tasks_server did not start"
    );
    child
}

async fn client(
    sqs_client: &aws_sdk_sqs::Client,
    queue: &str,
) -> RunningService<RoleClient, TasksClient> {
    let transport = QueueClientTransport::builder(queue)
        .wait(Duration::from_secs(1))
        .connect_sqs(sqs_client)
        .await
        .expect("client transport");
    rmcp::service::serve_client_with_lifecycle(
        TasksClient::declaring(),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("discover")
}

/// The pid in a status message `pid N: …` or a result `… in pid N`.
fn pid_in(text: &str) -> Option<u32> {
    let after = text.split("pid ").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_task_survives_the_sigkill_of_its_replica() {
    let ls = aws::localstack().await;
    let sqs_client = ls.sqs_client().await;
    // A short visibility timeout: a killed replica's request reappears
    // within 5 s (a live one keeps extending it).
    let name = asyncmcp_testkit::unique_name("tasks-replicas");
    let queue = sqs_client
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "5",
        )
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned();
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("tasks-store"));
    std::fs::create_dir_all(&dir).expect("store dir");
    let db = dir.join("tasks.db");
    let store_spec = format!("sqlite:{}", db.display());

    let mut first = replica(ls, &queue, &store_spec).await;
    let mut second = replica(ls, &queue, &store_spec).await;
    let caller = client(&sqs_client, &queue).await;

    let created = caller
        .call_tool_once(
            CallToolRequestParams::new("work").with_arguments(
                serde_json::json!({"ms": 60_000})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("tools/call");
    let CallToolResponse::Task(created) = created else {
        panic!("expected a task, got {created:?}");
    };
    let task_id = created.task.task_id;

    // Wait for the runner to report progress, which names its pid.
    let started = Instant::now();
    let runner = loop {
        let polled = caller
            .get_task(GetTaskParams::new(&task_id))
            .await
            .expect("tasks/get");
        assert_eq!(polled.task.status(), TaskStatus::Working);
        if let Some(pid) = polled.task.task.status_message.as_deref().and_then(pid_in) {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no progress from the runner"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (victim, survivor) = if first.id() == Some(runner) {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    assert_eq!(
        victim.id(),
        Some(runner),
        "the runner is one of the replicas"
    );
    let survivor_pid = survivor.id().expect("survivor pid");
    victim.start_kill().expect("SIGKILL the runner");
    victim.wait().await.expect("the runner is gone");

    // Polling goes on, served by the survivor, until the task ends.
    let mut seen = vec![TaskStatus::Working];
    let done = loop {
        let polled = caller
            .get_task(GetTaskParams::new(&task_id))
            .await
            .expect("tasks/get after the kill");
        let status = polled.task.status();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if status.is_terminal() {
            break polled;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "task still working"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(seen, vec![TaskStatus::Working, TaskStatus::Completed]);
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("not completed: {:?}", done.task.payload);
    };
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("worked 60000 ms"), "{text}");
    assert_eq!(
        pid_in(text),
        Some(survivor_pid),
        "finished by the survivor: {text}"
    );

    let store = SqliteTaskStore::open(&db).await.expect("open the store");
    let record = store.get(&task_id).await.expect("read").expect("record");
    assert_eq!(record.record.runs, 2, "run, then taken over once");

    caller.cancel().await.expect("close");
    survivor.start_kill().ok();
    let _ = sqs::delete_queue(&sqs_client, &queue).await;
    let _ = std::fs::remove_dir_all(&dir);
}

//! Tasks through the `asyncmcp` command on LocalStack SQS: `asyncmcp serve
//! --tasks` makes the tool calls of an unchanged Python SDK 2.x server tasks
//! for `asyncmcp call --task`, which polls them to their end, shows their
//! status message and cancels them when stopped; plain calls through the
//! same `serve` stay plain. Against a library `QueueServer` with the test
//! kit's task tools, whose task store the test reads, `call --task` cancels
//! the task on `--timeout` and when it asks for input the command cannot
//! give. Against a server that knows nothing of MCP 2026-07-28 (Python
//! asyncmcp 0.2.1), `call --task` falls back to `initialize` and makes an
//! ordinary call.
//!
//! Needs LocalStack, the Python MCP SDK 2.x and the Python asyncmcp peer:
//! `scripts/test.sh` starts and installs them (see
//! `asyncmcp_testkit::real_clients` and `asyncmcp_testkit::py_peer`).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp::tasks::{MemoryTaskStore, TaskSettings, TaskStore};
use asyncmcp::{QueueClientTransport, QueueServer};
use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::py_peer::py_peer_python;
use asyncmcp_testkit::task_tools::{TaskToolStats, TaskTools};
use asyncmcp_testkit::tasks_client::TasksClient;
use asyncmcp_testkit::{eventually, real_clients};
use common::marks::MarkDir;
use common::serve::{Serve, run_to_end};
use rmcp::RoleClient;
use rmcp::model::{CancelTaskParams, GetTaskParams, ProtocolVersion, TaskStatus};
use rmcp::service::{ClientLifecycleMode, RunningService, serve_client_with_lifecycle};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::{CancellationToken, DropGuard};

/// What `call --task` says on stderr first: `asyncmcp: task <id>`.
const TASK_LINE: &str = "asyncmcp: task ";

/// `python task_server.py MARK_DIR`: the command words after `--`.
fn task_server(marks: &MarkDir) -> Vec<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers/task_server.py");
    vec![
        real_clients::mcp2_python().display().to_string(),
        script.display().to_string(),
        marks.path().display().to_string(),
    ]
}

/// `asyncmcp serve --queue-url QUEUE FLAGS -- python task_server.py`.
async fn serve_tasks(
    ls: &LocalStack,
    queue: &str,
    flags: &[&str],
    marks: &MarkDir,
    env: &[(&str, &str)],
) -> Serve {
    let command = task_server(marks);
    let mut args = vec!["--queue-url", queue];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend(command.iter().map(String::as_str));
    Serve::start_with(ls, &args, env).await
}

/// The task id in `call --task`'s stderr.
fn task_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix(TASK_LINE))
        .unwrap_or_else(|| panic!("no `{TASK_LINE}<id>` line:\n{stderr}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_task_is_polled_to_its_result_and_plain_calls_stay_plain() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-tasks").await;
    let marks = MarkDir::new("asyncmcp-task-marks");
    let serve = serve_tasks(ls, &queue, &["--task-tools", "slow,fail"], &marks, &[]).await;
    assert!(
        serve
            .stderr()
            .contains("tool calls as tasks, kept in memory"),
        "the ready line says tasks are on:\n{}",
        serve.stderr()
    );

    let task = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &queue,
            "--task",
            "slow",
            r#"{"ms": 3000, "steps": 6}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(task.text(), "slept 3000 ms", "{task:#?}");
    let id = task_id(&task.stderr);
    assert!(!id.is_empty(), "{task:#?}");
    // The tool's progress, as the task's status message, polled.
    assert!(
        task.stderr.contains("asyncmcp: working: step "),
        "a status message on stderr: {task:#?}"
    );

    // A tool error through a task: exit 3, the result on stdout.
    let failed = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &queue,
            "--task",
            "fail",
            r#"{"reason": "no luck"}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(failed.status.code(), Some(3), "{failed:#?}");
    let result: Value = serde_json::from_str(&failed.stdout).expect("a JSON result");
    assert_eq!(result["isError"], true, "{result}");
    assert!(result.to_string().contains("no luck"), "{result}");
    assert!(failed.stderr.contains(TASK_LINE), "{failed:#?}");

    // A client that does not declare the extension: an ordinary call.
    let plain = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &queue,
            "slow",
            r#"{"ms": 200, "steps": 2}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(plain.text(), "slept 200 ms", "{plain:#?}");
    assert!(!plain.stderr.contains(TASK_LINE), "no task: {plain:#?}");
}

#[tokio::test]
async fn sigint_while_polling_cancels_the_task_and_exits_130() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-tasks-sigint").await;
    let marks = MarkDir::new("asyncmcp-task-marks");
    let mut serve = serve_tasks(
        ls,
        &queue,
        &["--tasks"],
        &marks,
        &[("ASYNCMCP_LOG", "info")],
    )
    .await;

    let mut call = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    call.args([
        "call",
        "--queue-url",
        &queue,
        "--task",
        "slow",
        r#"{"ms": 60000, "steps": 120, "tag": "sigint"}"#,
    ])
    .env_remove("ASYNCMCP_LOG")
    .env_remove("ASYNCMCP_TIMEOUT")
    .envs(ls.aws_env())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = call.spawn().expect("start asyncmcp call");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    // Until the task's status message shows that the tool is running.
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no status message within 60 s:\n{seen}"))
            .expect("read stderr")
            .unwrap_or_else(|| panic!("stderr ended:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("working: step ") {
            break;
        }
    }
    let id = task_id(&seen);

    // Another connection knows the id: it can neither read nor cancel it.
    let intruder = intruder(ls, &queue).await;
    let read = intruder.get_task(GetTaskParams::new(&id)).await;
    assert!(
        format!("{read:?}").contains("unknown task"),
        "another caller cannot read the task: {read:?}"
    );
    let cancelled = intruder.cancel_task(CancelTaskParams::new(&id)).await;
    assert!(
        format!("{cancelled:?}").contains("unknown task"),
        "another caller cannot cancel the task: {cancelled:?}"
    );
    intruder.cancel().await.expect("close the intruder");
    // The task goes on: a later step is shown.
    let last = seen
        .lines()
        .rfind(|line| line.contains("working: step "))
        .unwrap_or_default()
        .to_owned();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no later status within 30 s:\n{seen}"))
            .expect("read stderr")
            .unwrap_or_else(|| panic!("stderr ended:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("working: step ") && line != last {
            break;
        }
    }

    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exited within 30 s of SIGINT")
        .expect("wait");
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        seen.contains(&format!("asyncmcp: task {id} cancelled")),
        "the command saw the task cancelled (tasks/get after tasks/cancel):\n{seen}"
    );
    assert!(seen.contains("stopped by SIGINT"), "{seen}");

    // The server process's tool was stopped, and serve ended the task
    // cancelled.
    let mark = marks.path().join("cancelled-sigint");
    assert!(
        eventually(Duration::from_secs(20), || mark.exists()).await,
        "the tool saw its cancellation; serve:\n{}",
        serve.stderr()
    );
    serve.wait_for_stderr("task ended").await;
    let ended = serve.stderr();
    let line = ended
        .lines()
        .find(|line| line.contains("task ended") && line.contains(&id))
        .unwrap_or_else(|| panic!("no `task ended` line for {id}:\n{ended}"));
    assert!(line.contains("Cancelled"), "{line}");
    serve.assert_running();
}

/// Another caller of the server behind `queue`, with a connection (and
/// `ClientId`) of its own.
async fn intruder(ls: &LocalStack, queue: &str) -> RunningService<RoleClient, TasksClient> {
    let transport = QueueClientTransport::builder(queue)
        .wait(Duration::from_secs(1))
        .connect_sqs(&sqs::client(&ls.sdk_config().await))
        .await
        .expect("connect another client");
    serve_client_with_lifecycle(
        TasksClient::declaring(),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("server/discover through serve")
}

/// A library `QueueServer` serving the test kit's task tools on a queue of
/// its own, its task store shared with the test; stopped when dropped.
struct TaskServer {
    queue: String,
    store: MemoryTaskStore,
    _stop: DropGuard,
}

async fn task_server_in_process(ls: &LocalStack) -> TaskServer {
    let queue = ls.create_queue("call-tasks").await;
    let sqs_client = sqs::client(&ls.sdk_config().await);
    let inbox = SqsInbox::open(sqs_client.clone(), &queue)
        .await
        .expect("open the request queue");
    let store = MemoryTaskStore::new();
    let settings = TaskSettings::new(store.clone())
        .poll_interval(Duration::from_millis(200))
        .watch_interval(Duration::from_millis(50));
    let stop = CancellationToken::new();
    QueueServer::builder(inbox, SqsOutbox::new(sqs_client))
        .tasks(settings)
        .build(TaskTools::factory(Arc::new(TaskToolStats::default())))
        .spawn(stop.clone());
    TaskServer {
        queue,
        store,
        _stop: stop.drop_guard(),
    }
}

impl TaskServer {
    /// The status of task `id` in the store.
    async fn status(&self, id: &str) -> TaskStatus {
        self.store
            .get(id)
            .await
            .expect("read the store")
            .unwrap_or_else(|| panic!("no task {id} in the store"))
            .record
            .status()
    }
}

#[tokio::test]
async fn the_timeout_and_input_the_command_cannot_give_cancel_the_task() {
    let ls = aws::localstack().await;
    let server = task_server_in_process(ls).await;

    let timed_out = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &server.queue,
            "--task",
            "--timeout",
            "6s",
            "work",
            r#"{"ms": 60000}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(timed_out.status.code(), Some(124), "{timed_out:#?}");
    assert!(timed_out.stdout.is_empty(), "{timed_out:#?}");
    let id = task_id(&timed_out.stderr);
    assert!(
        timed_out
            .stderr
            .contains(&format!("asyncmcp: task {id} cancelled")),
        "{timed_out:#?}"
    );
    assert_eq!(server.status(&id).await, TaskStatus::Cancelled);

    // `greet` asks for a name (input_required): named, and the task
    // cancelled rather than left waiting for input no one can give.
    let asked = run_to_end(
        ls,
        &["call", "--queue-url", &server.queue, "--task", "greet"],
        &[],
    )
    .await
    .failed_saying("needs input");
    assert!(
        asked.stderr.contains("(elicitation/create)"),
        "names the request: {asked:#?}"
    );
    let id = task_id(&asked.stderr);
    assert_eq!(server.status(&id).await, TaskStatus::Cancelled);
}

#[tokio::test]
async fn task_flags_are_checked_before_anything_starts() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-task-flags").await;
    for (flags, says) in [
        (&["--task-store", "sqlite"][..], "accepted: `memory`"),
        (
            &["--tasks", "--task-store", "nowhere"][..],
            "accepted: `memory`",
        ),
        (&["--task-ttl", "60"][..], "--task-ttl needs --tasks"),
        (&["--tasks", "--task-ttl", "0"][..], "at least one second"),
    ] {
        let mut args = vec!["serve", "--queue-url", &queue];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        let run = run_to_end(ls, &args, &[]).await;
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {run:#?}");
        assert!(
            run.stderr.contains(says),
            "{flags:?} says {says:?}: {run:#?}"
        );
    }
    let help = run_to_end(ls, &["serve", "--help"], &[]).await.ok();
    for needle in [
        "--task-tools",
        "--task-store",
        "this process only",
        "shared store",
    ] {
        assert!(help.stdout.contains(needle), "{needle}: {}", help.stdout);
    }
    let help = run_to_end(ls, &["call", "--help"], &[]).await.ok();
    assert!(help.stdout.contains("--task"), "{}", help.stdout);
}

/// Python asyncmcp 0.2.1's SQS server (the interop tests' peer), which does
/// not answer `server/discover`: `call --task` falls back to `initialize`
/// (after rmcp's 10 s wait for an answer) and the call is an ordinary one.
#[tokio::test]
async fn a_server_without_tasks_answers_call_task_as_usual() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("call-task-legacy").await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/py_server.py");
    let mut server = tokio::process::Command::new(py_peer_python())
        .arg(&script)
        .args(["--request-queue-url", &queue])
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python asyncmcp server");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "READY" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the Python server is polling");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let run = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &queue,
            "--task",
            "add",
            r#"{"a": 2, "b": 3}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(run.text(), "5", "{run:#?}");
    assert!(!run.stderr.contains(TASK_LINE), "no task: {run:#?}");
}

#[tokio::test]
async fn tasks_kept_in_an_sqlite_file_outlive_the_serve_process() {
    use asyncmcp::tasks::{SqliteTaskStore, TaskStore};
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-tasks-sqlite").await;
    let marks = MarkDir::new("asyncmcp-task-marks");
    let db = marks.path().join("tasks.db");
    let store = format!("sqlite:{}", db.display());
    let serve = serve_tasks(
        ls,
        &queue,
        &["--task-tools", "slow", "--task-store", &store],
        &marks,
        &[],
    )
    .await;
    assert!(
        serve.stderr().contains(&format!("kept in {store}")),
        "the ready line names the store:\n{}",
        serve.stderr()
    );
    let task = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &queue,
            "--task",
            "slow",
            r#"{"ms": 500, "steps": 2}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(task.text(), "slept 500 ms", "{task:#?}");
    let id = task_id(&task.stderr);
    drop(serve);
    // Read back by another process's store handle after serve is gone.
    let reopened = SqliteTaskStore::open(&db).await.expect("open the file");
    let record = reopened
        .get(&id)
        .await
        .expect("read")
        .expect("the task is in the file");
    assert_eq!(record.record.status(), TaskStatus::Completed);
    let text = record
        .record
        .result
        .as_ref()
        .map(|r| r["content"][0]["text"].clone());
    assert_eq!(text, Some(serde_json::json!("slept 500 ms")));
}

//! `asyncmcp serve` when its server process fails: killed mid-call, crashing,
//! never answering, writing garbage on stdout, crashing on every delivery;
//! and a pool of two processes sharing the load.
//!
//! The server is `servers/fault_server.py` (Python MCP SDK 2.x), which
//! appends `TAG PID` to a runs file for every tool run, so a test can tell
//! how often a call ran and on which process. Calls go through the built
//! `asyncmcp call`. Needs LocalStack (`scripts/test.sh` starts it) and
//! `ASYNCMCP_MCP2_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::{eventually, real_clients, unique_name};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What serve prints on stderr once it takes requests.
const READY: &str = "asyncmcp serve: ready:";

/// Settings of the commands a developer's shell could hold.
const COMMAND_VARS: [&str; 12] = [
    "ASYNCMCP_QUEUE_URL",
    "ASYNCMCP_TOPIC_ARN",
    "ASYNCMCP_REPLY_QUEUE_URL",
    "ASYNCMCP_CLIENT_ID",
    "ASYNCMCP_TIMEOUT",
    "ASYNCMCP_SIGNING_KEY",
    "ASYNCMCP_SIGNING_KEY_PREVIOUS",
    "ASYNCMCP_SESSION_KEY",
    "ASYNCMCP_REQUEST_TIMEOUT",
    "ASYNCMCP_DEAD_LETTER_QUEUE",
    "ASYNCMCP_MAX_RECEIVE_COUNT",
    "ASYNCMCP_CHILDREN",
];

/// A directory of its own for one test's runs file, removed when dropped.
struct FaultDir(PathBuf);

impl FaultDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(unique_name("serve-faults"));
        std::fs::create_dir_all(&path).expect("create the fault directory");
        Self(path)
    }

    /// The runs so far: `(tag, pid)` in the order they started.
    fn runs(&self) -> Vec<(String, u32)> {
        let text = std::fs::read_to_string(self.0.join("runs")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (tag, pid) = line.rsplit_once(' ')?;
                Some((tag.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }

    /// The pids that ran `tag`, in order.
    fn runs_of(&self, tag: &str) -> Vec<u32> {
        self.runs()
            .into_iter()
            .filter(|(t, _)| t == tag)
            .map(|(_, pid)| pid)
            .collect()
    }
}

impl Drop for FaultDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `asyncmcp serve` running the fault server; stopped (SIGTERM, then
/// SIGKILL) when dropped.
struct Serve {
    process: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts serve on `queue` with `flags`, the server seeing `env`, and
    /// waits for its ready line.
    async fn start(
        ls: &LocalStack,
        queue: &str,
        dir: &FaultDir,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let python = real_clients::mcp2_python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/fault_server.py");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
        for var in COMMAND_VARS {
            command.env_remove(var);
        }
        command
            .args(["serve", "--queue-url", queue, "--shutdown-grace", "1s"])
            .args(flags)
            .arg("--")
            .arg(python)
            .arg(script)
            .envs(ls.aws_env())
            .env("FAULT_DIR", &dir.0)
            .env("ASYNCMCP_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut process = command.spawn().expect("start asyncmcp serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(process.stderr.take().expect("piped stderr")).lines();
        let kept = stderr.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(READY)
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                let mut kept = kept.lock().expect("stderr lock");
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let serve = Self { process, stderr };
        match tokio::time::timeout(Duration::from_secs(60), ready_rx).await {
            Ok(Ok(())) => serve,
            _ => panic!(
                "asyncmcp serve was not ready within 60 s; its stderr:\n{}",
                serve.stderr()
            ),
        }
    }

    /// What serve printed on stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until serve has said `needle` on stderr (within 60 s).
    async fn wait_for_stderr(&self, needle: &str) {
        let said = eventually(Duration::from_secs(60), || self.stderr().contains(needle)).await;
        assert!(
            said,
            "serve said {needle:?}; its stderr:\n{}",
            self.stderr()
        );
    }

    /// Panics unless serve is still running.
    fn assert_running(&mut self) {
        let exited = self.process.try_wait().expect("check on serve");
        assert!(
            exited.is_none(),
            "serve exited ({exited:?}); its stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGTERM first, so that serve stops its server processes itself.
        if let Some(pid) = self.process.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..50 {
                if matches!(self.process.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.process.start_kill();
    }
}

/// How one `asyncmcp call` ended.
#[derive(Debug)]
struct Called {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Called {
    /// The text of a successful call's first content block.
    fn text(&self) -> String {
        assert_eq!(self.code, Some(0), "the call succeeded: {self:#?}");
        let result: Value = serde_json::from_str(&self.stdout).expect("a JSON result");
        result["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("a text result: {self:#?}"))
            .to_owned()
    }
}

/// `asyncmcp call --queue-url QUEUE TOOL ARGS` (within 90 s).
async fn call(ls: &LocalStack, queue: &str, tool: &str, args: Value) -> Called {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    for var in COMMAND_VARS {
        command.env_remove(var);
    }
    command
        .args(["call", "--queue-url", queue, "--timeout", "90s", tool])
        .arg(args.to_string())
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("asyncmcp call ended within 120 s")
        .expect("run asyncmcp call");
    Called {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The pid of the server process that answers the `pid` tool.
async fn server_pid(ls: &LocalStack, queue: &str) -> u32 {
    call(ls, queue, "pid", serde_json::json!({}))
        .await
        .text()
        .parse()
        .expect("a pid")
}

/// The pid at the end of `TAG ran on PID`.
fn ran_on(text: &str) -> u32 {
    text.rsplit_once(' ')
        .and_then(|(_, pid)| pid.parse().ok())
        .unwrap_or_else(|| panic!("`... on PID`: {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_mid_call_is_restarted_and_its_calls_run_again() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-kill").await;
    let dir = FaultDir::new();
    let mut serve = Serve::start(ls, &queue, &dir, &[], &[]).await;
    let first = server_pid(ls, &queue).await;

    let tags = ["kill-a", "kill-b", "kill-c"];
    let calls: Vec<_> = tags
        .iter()
        .map(|tag| {
            // Long enough to be running, all three, when the kill comes.
            let (queue, args) = (queue.clone(), serde_json::json!({"seconds": 6, "tag": tag}));
            tokio::spawn(async move { call(ls, &queue, "slow", args).await })
        })
        .collect();
    let all_running = eventually(Duration::from_secs(60), || {
        tags.iter().all(|tag| dir.runs_of(tag) == [first])
    })
    .await;
    assert!(
        all_running,
        "the three calls run on {first}: {:?}",
        dir.runs()
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "killed the server process {first}");
    // A call arriving while the process restarts waits for the new one.
    let during = {
        let (queue, args) = (
            queue.clone(),
            serde_json::json!({"seconds": 0, "tag": "during"}),
        );
        tokio::spawn(async move { call(ls, &queue, "slow", args).await })
    };

    let mut answered_on = Vec::new();
    for (tag, handle) in tags.iter().zip(calls) {
        let text = handle.await.expect("call task").text();
        let pid = ran_on(&text);
        assert!(text.starts_with(tag), "{tag} answered its own call: {text}");
        assert_ne!(pid, first, "{tag} was answered by a run after the kill");
        // Run twice: cut short on the killed process, then to its end on
        // the new one, which answered.
        assert_eq!(dir.runs_of(tag), [first, pid], "runs of {tag}");
        answered_on.push(pid);
    }
    let text = during.await.expect("call task").text();
    answered_on.push(ran_on(&text));
    assert_eq!(
        dir.runs_of("during"),
        [ran_on(&text)],
        "run once, on the new process"
    );
    let now = server_pid(ls, &queue).await;
    assert_ne!(now, first, "a new server process answers");
    assert!(answered_on.iter().all(|pid| *pid == now), "{answered_on:?}");
    serve.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_crashes_the_process_once_is_answered_by_its_second_run() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-crash-once").await;
    let dir = FaultDir::new();
    let mut serve = Serve::start(ls, &queue, &dir, &[], &[]).await;

    let text = call(ls, &queue, "crash_once", serde_json::json!({"tag": "once"}))
        .await
        .text();
    let runs = dir.runs_of("once");
    assert_eq!(runs.len(), 2, "crashed once, then ran to its end: {runs:?}");
    assert_ne!(runs[0], runs[1], "the second run was on a new process");
    assert_eq!(text, format!("once survived on {}", runs[1]));
    serve.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_never_answered_times_out_and_the_process_stays_usable() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-hang").await;
    let dir = FaultDir::new();
    let mut serve = Serve::start(ls, &queue, &dir, &["--request-timeout", "2s"], &[]).await;
    let before = server_pid(ls, &queue).await;

    let hung = call(ls, &queue, "hang", serde_json::json!({})).await;
    // Exit 1 with the server's JSON-RPC error, not 124: answered before
    // the call's own 90 s deadline.
    assert_eq!(hung.code, Some(1), "{hung:#?}");
    assert!(hung.stderr.contains("-32001"), "a timeout error: {hung:#?}");
    assert!(hung.stderr.contains("timed out") || hung.stderr.contains("timeout"));

    // The server was told: its handler was cancelled, on the same process.
    let cancelled = eventually(Duration::from_secs(10), || {
        dir.runs_of("hang-cancelled") == [before]
    })
    .await;
    assert!(cancelled, "the hung call was cancelled: {:?}", dir.runs());
    let echoed = call(ls, &queue, "echo", serde_json::json!({"text": "after"})).await;
    assert_eq!(echoed.text(), "echo: after");
    assert_eq!(
        server_pid(ls, &queue).await,
        before,
        "no restart was needed"
    );
    assert_eq!(dir.runs_of("hang"), [before], "the hung call ran once");
    serve.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_server_stdout_does_not_corrupt_answers() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-garbage").await;
    let dir = FaultDir::new();
    // rmcp logs, at debug, each line it could not take as a message: proof
    // that the garbage reached serve.
    let env = [
        ("FAULT_GARBAGE", "1"),
        ("ASYNCMCP_LOG", "warn,rmcp::transport::async_rw=debug"),
    ];
    let mut serve = Serve::start(ls, &queue, &dir, &[], &env).await;

    for text in ["one", "two", "three"] {
        let echoed = call(ls, &queue, "echo", serde_json::json!({"text": text})).await;
        assert_eq!(echoed.text(), format!("echo: {text}"), "{}", serve.stderr());
    }
    let runs = dir.runs();
    assert_eq!(
        runs.iter().map(|(tag, _)| tag.as_str()).collect::<Vec<_>>(),
        ["echo-one", "echo-two", "echo-three"],
        "each call ran once: {runs:?}"
    );
    let stderr = serve.stderr();
    for garbage in [
        "garbage startup",
        "garbage echo",
        r#"{"not": "a JSON-RPC message"}"#,
    ] {
        assert!(
            stderr.contains(garbage),
            "serve read {garbage:?}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("server process exited"),
        "no restart was needed:\n{stderr}"
    );
    serve.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_always_crashes_is_dead_lettered_and_serve_goes_on() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-doomed").await;
    let dead = ls.create_queue("serve-doomed-dlq").await;
    let dir = FaultDir::new();
    let flags = ["--dead-letter-queue", &dead, "--max-receive-count", "2"];
    let mut serve = Serve::start(ls, &queue, &dir, &flags, &[]).await;

    let doomed = call(
        ls,
        &queue,
        "crash_always",
        serde_json::json!({"tag": "doomed"}),
    )
    .await;
    assert_eq!(doomed.code, Some(1), "an error, not a result: {doomed:#?}");
    assert!(doomed.stdout.is_empty(), "{doomed:#?}");
    assert!(doomed.stderr.contains("dead-lettered"), "{doomed:#?}");
    assert_eq!(dir.runs_of("doomed").len(), 2, "ran on both deliveries");

    let sqs = ls.sqs_client().await;
    let received = sqs
        .receive_message()
        .queue_url(&dead)
        .message_attribute_names("All")
        .wait_time_seconds(10)
        .send()
        .await
        .expect("receive from the dead-letter queue");
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "the request is in the dead-letter queue");
    let attributes = messages[0].message_attributes().expect("attributes");
    let reason = attributes
        .get("DeadLetterReason")
        .and_then(|value| value.string_value())
        .expect("a DeadLetterReason");
    assert!(reason.contains("on delivery 2"), "{reason}");
    assert!(
        reason.contains("server process exited before it answered"),
        "the reason names the process's end: {reason}"
    );
    assert!(
        messages[0]
            .body()
            .unwrap_or_default()
            .contains("crash_always"),
        "the request itself was kept"
    );
    assert_eq!(
        aws::queue_depth(&sqs, &queue).await,
        0,
        "request queue empty"
    );

    let echoed = call(
        ls,
        &queue,
        "echo",
        serde_json::json!({"text": "still here"}),
    )
    .await;
    assert_eq!(echoed.text(), "echo: still here");
    serve.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_concurrent_calls() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-pool").await;
    let dir = FaultDir::new();
    // Serve takes requests once one process is up: the other's start is
    // awaited (from its log line), or every call could go to the first.
    let log = [("ASYNCMCP_LOG", "warn,asyncmcp::serve::pool=info")];
    let mut serve = Serve::start(ls, &queue, &dir, &["--children", "2"], &log).await;
    for child in ["child=0", "child=1"] {
        serve
            .wait_for_stderr(&format!("server process ready {child}"))
            .await;
    }

    let calls: Vec<_> = (0..20)
        .map(|i| {
            let queue = queue.clone();
            let args = serde_json::json!({"seconds": 1, "tag": format!("pool-{i}")});
            tokio::spawn(async move { call(ls, &queue, "slow", args).await })
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for (i, handle) in calls.into_iter().enumerate() {
        let text = handle.await.expect("call task").text();
        assert!(text.starts_with(&format!("pool-{i} ran on ")), "{text}");
        pids.insert(ran_on(&text));
    }
    assert_eq!(
        pids.len(),
        2,
        "both processes ran calls: {pids:?}\n{}",
        serve.stderr()
    );
    let runs = dir.runs();
    assert_eq!(runs.len(), 20, "each call ran once: {runs:?}");
    serve.assert_running();
}

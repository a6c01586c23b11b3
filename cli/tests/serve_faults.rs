//! `asyncmcp serve` when its server process fails: killed mid-call, crashing,
//! never answering, writing garbage on stdout, crashing on every delivery;
//! and a pool of two processes sharing the load.
//!
//! The server is `servers/fault_server.py` (Python MCP SDK 2.x, see
//! `common/fault.rs`), which records every tool run, so a test can tell
//! how often a call ran and on which process. Calls go through the built
//! `asyncmcp call`. Needs LocalStack (`scripts/test.sh` starts it) and
//! `ASYNCMCP_MCP2_PYTHON`.

mod common;

use std::time::Duration;

use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::eventually;
use common::Run;
use common::fault::{FaultDir, start_serve};
use common::serve::run_to_end;
use serde_json::Value;

/// `asyncmcp call --queue-url QUEUE TOOL ARGS` (within 90 s).
async fn call(ls: &LocalStack, queue: &str, tool: &str, args: Value) -> Run {
    let args = args.to_string();
    run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            queue,
            "--timeout",
            "90s",
            tool,
            &args,
        ],
        &[],
    )
    .await
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
    let mut serve = start_serve(ls, &queue, &dir, &[], &[]).await;
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
    let mut serve = start_serve(ls, &queue, &dir, &[], &[]).await;

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
    let mut serve = start_serve(ls, &queue, &dir, &["--request-timeout", "2s"], &[]).await;
    let before = server_pid(ls, &queue).await;

    let hung = call(ls, &queue, "hang", serde_json::json!({})).await;
    // Exit 1 with the server's JSON-RPC error, not 124: answered before
    // the call's own 90 s deadline.
    assert_eq!(hung.status.code(), Some(1), "{hung:#?}");
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
    let mut serve = start_serve(ls, &queue, &dir, &[], &env).await;

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
    let mut serve = start_serve(ls, &queue, &dir, &flags, &[]).await;

    let doomed = call(
        ls,
        &queue,
        "crash_always",
        serde_json::json!({"tag": "doomed"}),
    )
    .await;
    assert_eq!(
        doomed.status.code(),
        Some(1),
        "an error, not a result: {doomed:#?}"
    );
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
    let mut serve = start_serve(ls, &queue, &dir, &["--children", "2"], &log).await;
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

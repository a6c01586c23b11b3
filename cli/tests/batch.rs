//! `asyncmcp batch`, the built binary, against two library `QueueServer`
//! replicas on one LocalStack SQS queue, serving a tool that records every
//! execution so the tests can prove what ran how often.
//!
//! Needs LocalStack: `scripts/test.sh` starts it (see `asyncmcp_testkit::aws`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp_testkit::aws::{self, LocalStack};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Every execution of `square`, by its `n`, across the replicas.
#[derive(Debug, Default)]
struct Executions(Mutex<HashMap<i64, usize>>);

impl Executions {
    fn counts(&self) -> HashMap<i64, usize> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// A server with one tool, `square(n)`: `n * n` as text, each run recorded.
#[derive(Clone)]
struct Squarer(Arc<Executions>);

impl ServerHandler for Squarer {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let n = request
            .arguments
            .as_ref()
            .and_then(|args| args.get("n"))
            .and_then(Value::as_i64)
            .ok_or_else(|| ErrorData::invalid_params("n must be an integer", None))?;
        *self.0.0.lock().expect("not poisoned").entry(n).or_default() += 1;
        Ok(CallToolResult::success(vec![ContentBlock::text((n * n).to_string())]).into())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// `replicas` servers on one new request queue, stopped when dropped.
struct Servers {
    queue: String,
    executions: Arc<Executions>,
    _stop: DropGuard,
}

async fn servers(ls: &LocalStack, replicas: usize) -> Servers {
    let queue = ls.create_queue("batch-requests").await;
    let client = sqs::client(&ls.sdk_config().await);
    let executions = Arc::new(Executions::default());
    let stop = CancellationToken::new();
    for _ in 0..replicas {
        let inbox = SqsInbox::open(client.clone(), &queue)
            .await
            .expect("open the request queue");
        let squarer = Squarer(executions.clone());
        QueueServer::builder(inbox, SqsOutbox::new(client.clone()))
            .max_in_flight(64)
            .build(move || squarer.clone())
            .spawn(stop.clone());
    }
    Servers {
        queue,
        executions,
        _stop: stop.drop_guard(),
    }
}

/// A fresh directory for a test's files.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name(name));
    std::fs::create_dir_all(&dir).expect("make the work directory");
    dir
}

/// `calls` calls of `square`, keys 0.., in `dir/calls.jsonl`.
fn write_calls(dir: &Path, calls: i64) -> PathBuf {
    let path = dir.join("calls.jsonl");
    let text: String = (0..calls)
        .map(|n| {
            format!(
                "{}\n",
                json!({"key": n, "tool": "square", "arguments": {"n": n}})
            )
        })
        .collect();
    std::fs::write(&path, text).expect("write the calls");
    path
}

/// `asyncmcp batch` with LocalStack's settings and none of the developer's.
fn batch(
    ls: &LocalStack,
    queue: &str,
    input: &Path,
    out: &Path,
    more: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    for var in [
        "ASYNCMCP_QUEUE_URL",
        "ASYNCMCP_REPLY_QUEUE_URL",
        "ASYNCMCP_CLIENT_ID",
        "ASYNCMCP_IN_FLIGHT",
        "ASYNCMCP_SIGNING_KEY",
        "ASYNCMCP_SIGNING_KEY_PREVIOUS",
        "ASYNCMCP_LOG",
    ] {
        command.env_remove(var);
    }
    command
        .arg("batch")
        .args(["--queue-url", queue])
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(more)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end, within `limit`.
async fn run(mut command: tokio::process::Command, limit: Duration) -> Output {
    tokio::time::timeout(limit, command.output())
        .await
        .expect("asyncmcp batch finished in time")
        .expect("run asyncmcp")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The whole lines of `path` (none if it is missing).
fn whole_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// Starts `command`, waits until `out` has `lines` result lines, and kills
/// it with SIGKILL.
async fn kill_after(mut command: tokio::process::Command, out: &Path, lines: usize) {
    // Shown with the test's output; never left to fill a pipe.
    command.stderr(Stdio::inherit());
    let mut child = command.spawn().expect("start asyncmcp batch");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while whole_lines(out) < lines {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{lines} results within 240 s (have {})",
            whole_lines(out)
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("asyncmcp batch ended early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL: {status}"
    );
}

/// The result lines of `out`, each key's `square` text, checking that each
/// key has exactly one line.
fn results(out: &Path) -> HashMap<i64, String> {
    let text = std::fs::read_to_string(out).expect("read the results");
    let mut results = HashMap::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).expect("a JSON line");
        let key = value["key"].as_i64().expect("an integer key");
        let text = value["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("a result: {line}"))
            .to_owned();
        assert!(
            results.insert(key, text).is_none(),
            "key {key} written twice"
        );
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_killed_twice_end_with_one_result_per_key_and_no_rerun() {
    const CALLS: i64 = 10_000;
    let ls = aws::localstack().await;
    let servers = servers(ls, 2).await;
    let dir = workdir("batch-10k");
    let input = write_calls(&dir, CALLS);
    let out = dir.join("results.jsonl");
    let started = std::time::Instant::now();
    let command = |resume: bool| {
        let mut more = vec!["--in-flight", "100", "--resend-after", "25s"];
        if resume {
            more.push("--resume");
        }
        batch(ls, &servers.queue, &input, &out, &more)
    };
    kill_after(command(false), &out, 2_500).await;
    // What a SIGKILL in the middle of a write leaves: a torn last line.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .expect("open");
    std::io::Write::write_all(&mut file, b"{\"key\": 9999, \"result\": {\"cont").expect("tear");
    drop(file);
    kill_after(command(true), &out, 6_000).await;
    let finished = run(command(true), Duration::from_secs(300)).await;
    assert!(finished.status.success(), "{}", stderr(&finished));
    eprintln!("the last run said: {}", stderr(&finished));
    let results = results(&out);
    assert_eq!(results.len(), CALLS as usize, "one line per key");
    for n in 0..CALLS {
        assert_eq!(results.get(&n), Some(&(n * n).to_string()), "key {n}");
    }
    let executions = servers.executions.counts();
    let twice: Vec<_> = executions.iter().filter(|(_, runs)| **runs > 1).collect();
    assert!(twice.is_empty(), "keys that ran more than once: {twice:?}");
    assert_eq!(executions.len(), CALLS as usize, "every key ran");
    assert!(
        !out.with_extension("jsonl.state").exists(),
        "the state file is removed at the end"
    );
    eprintln!(
        "10,000 calls, two SIGKILLs: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Resuming the finished run sends nothing.
    let again = run(command(true), Duration::from_secs(60)).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing to send"),
        "{}",
        stderr(&again)
    );
    assert_eq!(servers.executions.counts(), executions, "nothing ran");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_bad_line_is_refused_with_its_number_before_anything_is_sent() {
    let ls = aws::localstack().await;
    let servers = servers(ls, 1).await;
    let dir = workdir("batch-bad");
    let input = dir.join("calls.jsonl");
    std::fs::write(
        &input,
        "{\"key\": 1, \"tool\": \"square\", \"arguments\": {\"n\": 1}}\n\
         {\"key\": 2, \"tool\": \"square\", \"arguments\": {\"n\": 2}}\n\
         {\"key\": 3, \"tool\": \"square\", \"arguments\": [3]}\n",
    )
    .expect("write");
    let out = dir.join("results.jsonl");
    let output = run(
        batch(ls, &servers.queue, &input, &out, &[]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));
    assert!(!out.exists(), "no output file");
    let depth = aws::queue_depth(&ls.sqs_client().await, &servers.queue).await;
    assert_eq!(depth, 0, "nothing was sent");
    assert!(servers.executions.counts().is_empty(), "nothing ran");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn duplicate_keys_are_refused_before_anything_is_sent() {
    let ls = aws::localstack().await;
    let servers = servers(ls, 1).await;
    let dir = workdir("batch-dup");
    let input = dir.join("calls.jsonl");
    std::fs::write(
        &input,
        "{\"key\": \"a\", \"tool\": \"square\", \"arguments\": {\"n\": 1}}\n\
         {\"key\": \"b\", \"tool\": \"square\", \"arguments\": {\"n\": 2}}\n\
         {\"key\": \"a\", \"tool\": \"square\", \"arguments\": {\"n\": 3}}\n",
    )
    .expect("write");
    let out = dir.join("results.jsonl");
    let output = run(
        batch(ls, &servers.queue, &input, &out, &[]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("line 3") && said.contains("duplicate key \"a\" (first on line 1)"),
        "{said}"
    );
    assert!(!out.exists(), "no output file");
    assert!(servers.executions.counts().is_empty(), "nothing ran");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_finished_run_resumed_sends_nothing_and_a_torn_line_is_dropped() {
    let ls = aws::localstack().await;
    let servers = servers(ls, 1).await;
    let dir = workdir("batch-small");
    let input = write_calls(&dir, 20);
    let out = dir.join("results.jsonl");
    let first = run(
        batch(ls, &servers.queue, &input, &out, &[]),
        Duration::from_secs(120),
    )
    .await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(results(&out).len(), 20);
    let ran = servers.executions.counts();
    assert_eq!(ran.len(), 20);

    // Without --resume, an existing out file is refused.
    let refused = run(
        batch(ls, &servers.queue, &input, &out, &[]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--resume"),
        "{}",
        stderr(&refused)
    );

    let again = run(
        batch(ls, &servers.queue, &input, &out, &["--resume"]),
        Duration::from_secs(60),
    )
    .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing to send"),
        "{}",
        stderr(&again)
    );
    assert_eq!(servers.executions.counts(), ran, "nothing ran again");

    // A torn last line (as a SIGKILL mid-write leaves) is dropped on resume;
    // with no state file left, the run cannot tell what was sent: refused.
    let mut text = std::fs::read_to_string(&out).expect("read");
    let keep = text
        .lines()
        .take(19)
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    text = format!("{keep}{{\"key\": 19, \"resu");
    std::fs::write(&out, text).expect("write");
    let torn = run(
        batch(ls, &servers.queue, &input, &out, &["--resume"]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(torn.status.code(), Some(2), "{}", stderr(&torn));
    assert!(
        stderr(&torn).contains("torn last line"),
        "{}",
        stderr(&torn)
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        keep,
        "cut to whole lines"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn ctrl_c_stops_with_130_and_resume_finishes_without_running_anything_twice() {
    let ls = aws::localstack().await;
    let servers = servers(ls, 1).await;
    let dir = workdir("batch-int");
    let input = write_calls(&dir, 300);
    let out = dir.join("results.jsonl");
    // Resent early: any call resent that did run is answered from the
    // (one) replica's replay cache, not run again.
    let more = ["--in-flight", "4", "--resend-after", "5s"];
    let mut command = batch(ls, &servers.queue, &input, &out, &more);
    command.stderr(Stdio::inherit());
    let mut child = command.spawn().expect("start");
    assert!(
        asyncmcp_testkit::eventually(Duration::from_secs(60), || whole_lines(&out) >= 20).await,
        "results come"
    );
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(
        dir.join("results.jsonl.state").exists(),
        "the state is kept for --resume"
    );
    let resumed = run(
        batch(
            ls,
            &servers.queue,
            &input,
            &out,
            &[&more[..], &["--resume"]].concat(),
        ),
        Duration::from_secs(120),
    )
    .await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let results = results(&out);
    assert_eq!(results.len(), 300);
    let executions = servers.executions.counts();
    assert_eq!(executions.len(), 300);
    assert!(executions.values().all(|&runs| runs == 1), "{executions:?}");
    std::fs::remove_dir_all(&dir).ok();
}

//! `--scenario batch`: many `tools/call echo` fired at once and answers
//! collected as they come, through the library's [`Batch`] in this process
//! (`batch-lib`) or the `asyncmcp batch` command (`batch-cli`), beside the
//! ordinary rmcp client of `ours.rs` (`sqs`), all against the same two
//! server replicas.
//!
//! Each level is one batch of `calls` calls at `in_flight` pending, keys
//! unique to the level. A `batch-lib` call's latency runs from the slot
//! being taken to its answer; `asyncmcp batch` shows no per-call times, so
//! `batch-cli` reports none (its calls/s is answered calls over the
//! command's wall time, process start and file writing included). The
//! command's SQS API calls are read from its summary line on stderr (it
//! counts them itself); its CPU time is charged to this driver, which waits
//! for it (`cutime` in `/proc`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use asyncmcp::client::batch::{Answer, Batch, Call};
use asyncmcp::queue::sqs::{self, ApiCallCounter};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

use crate::RoleArgs;
use crate::protocol::{self, Command, RunResult, Stats};

/// How long a batch may go without an answer before the rest count as
/// errors.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What the echo calls send, and what their answers must carry.
const ECHOED: &str = "ping";

/// The batch driver's arguments.
#[derive(clap::Args, Clone)]
pub struct BatchArgs {
    #[command(flatten)]
    role: RoleArgs,
    /// Run the `asyncmcp batch` command at this path instead of the
    /// library's `Batch`.
    #[arg(long)]
    cli: Option<PathBuf>,
}

/// Answers the bench's commands, running each level as one batch.
pub async fn drive(args: BatchArgs) -> anyhow::Result<()> {
    let counter = ApiCallCounter::new();
    let sdk = sqs::sdk_config_from_env().await;
    let client = sqs::client_with_counter(&sdk, &counter);
    // API calls of the command's runs (it counts its own).
    let cli_calls = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(AtomicU64::new(0));
    let driver = Driver {
        args: args.clone(),
        client,
        cli_calls: cli_calls.clone(),
        runs,
    };
    let warm_up = driver.run(args.role.warm_up, 10).await?;
    anyhow::ensure!(warm_up.errors == 0, "warm-up failed: {warm_up:?}");
    let stats = move || match &args.cli {
        Some(_) => Stats {
            api_calls: cli_calls.load(Ordering::Relaxed),
            operations: Default::default(),
        },
        None => Stats::of(&counter),
    };
    protocol::serve_commands(|command| {
        let (driver, stats) = (driver.clone(), stats.clone());
        async move {
            match command {
                Command::Stats => Ok(serde_json::to_value(stats())?),
                Command::Run { calls, in_flight } => {
                    let mut result = driver.run(calls, in_flight).await?;
                    let now = stats();
                    (result.api_calls, result.operations) = (now.api_calls, now.operations);
                    Ok(serde_json::to_value(result)?)
                }
            }
        }
    })
    .await
}

#[derive(Clone)]
struct Driver {
    args: BatchArgs,
    client: sqs::Client,
    cli_calls: Arc<AtomicU64>,
    runs: Arc<AtomicU64>,
}

impl Driver {
    async fn run(&self, calls: usize, in_flight: usize) -> anyhow::Result<RunResult> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        match &self.args.cli {
            Some(program) => self.run_cli(program, run, calls, in_flight).await,
            None => self.run_lib(run, calls, in_flight).await,
        }
    }

    /// One batch through the library's [`Batch`].
    async fn run_lib(&self, run: u64, calls: usize, in_flight: usize) -> anyhow::Result<RunResult> {
        let role = &self.args.role;
        let started = Instant::now();
        let mut batch = Batch::builder(&role.request_address)
            .reply_queue(&role.reply_queue)
            .in_flight(in_flight)
            .connect_sqs(&self.client)
            .await?;
        let submitter = batch.submitter();
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let call = echo_call(&role.echo_field);
        // As a pipeline would (and the command does): sends under way
        // together, so the outbox can batch them, and the answers that have
        // come deleted together.
        let submitting = {
            let (sent, submitter) = (sent.clone(), Arc::new(submitter));
            tokio::spawn(async move {
                let mut sends = futures::stream::iter(0..calls)
                    .map(|i| {
                        let (sent, submitter, call) = (sent.clone(), submitter.clone(), &call);
                        async move {
                            let key = format!("l{run}-{i}");
                            let reservation = submitter.reserve(&key, call).await?;
                            sent.lock().await.insert(key, Instant::now());
                            reservation.send().await?;
                            anyhow::Ok(())
                        }
                    })
                    .buffered(in_flight.max(1));
                while let Some(sent) = sends.next().await {
                    sent?;
                }
                anyhow::Ok(())
            })
        };
        let mut result = RunResult::default();
        let mut answered = 0;
        while answered < calls {
            let Ok(Some(first)) = tokio::time::timeout(ANSWER_TIMEOUT, batch.next()).await else {
                tracing::warn!(answered, calls, "no answer within {ANSWER_TIMEOUT:?}");
                break;
            };
            let mut group = vec![first];
            while let Some(answer) = batch.try_next() {
                group.push(answer);
            }
            for answer in &group {
                answered += 1;
                let sent_at = sent.lock().await.remove(&answer.key);
                match (sent_at, check(answer)) {
                    (Some(at), Ok(())) => {
                        result.latencies_ms.push(at.elapsed().as_secs_f64() * 1e3)
                    }
                    (_, Err(e)) => {
                        tracing::warn!(key = %answer.key, error = %e, "bad answer");
                        result.errors += 1;
                    }
                    (None, Ok(())) => {
                        tracing::warn!(key = %answer.key, "answer to a key not sent");
                        result.errors += 1;
                    }
                }
            }
            let batch = &batch;
            for deleted in futures::future::join_all(group.iter().map(|a| batch.ack(a))).await {
                deleted?;
            }
        }
        result.elapsed_s = started.elapsed().as_secs_f64();
        result.errors += calls - answered;
        batch.close().await;
        submitting.await.context("submitter panicked")??;
        Ok(result)
    }

    /// One run of `asyncmcp batch` on a fresh input file.
    async fn run_cli(
        &self,
        program: &PathBuf,
        run: u64,
        calls: usize,
        in_flight: usize,
    ) -> anyhow::Result<RunResult> {
        let role = &self.args.role;
        let dir = std::env::temp_dir().join(format!(
            "asyncmcp-bench-batch-{}-{run}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let (input, output) = (dir.join("calls.jsonl"), dir.join("results.jsonl"));
        let mut lines = String::new();
        for i in 0..calls {
            let line = json!({"key": format!("l{run}-{i}"), "tool": "echo",
                              "arguments": {&role.echo_field: ECHOED}});
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        std::fs::write(&input, lines)?;
        let started = Instant::now();
        let command = tokio::process::Command::new(program)
            .arg("batch")
            .args(["--queue-url", &role.request_address])
            .args(["--reply-queue-url", &role.reply_queue])
            .args(["--in-flight", &in_flight.to_string()])
            .arg("--in")
            .arg(&input)
            .arg("--out")
            .arg(&output)
            .kill_on_drop(true)
            .output();
        let mut command = std::pin::pin!(command);
        // The level ends when the last answer is in the file; the command
        // then still stops its receivers (a long poll under way is let
        // finish), which is not part of the calls.
        let mut lines_seen = LineCounter::default();
        let mut last_line = None;
        let out = loop {
            tokio::select! {
                out = &mut command => break out,
                () = tokio::time::sleep(Duration::from_millis(10)), if last_line.is_none() => {
                    if lines_seen.count(&output) >= calls {
                        last_line = Some(started.elapsed());
                    }
                }
            }
        }
        .with_context(|| format!("running {}", program.display()))?;
        let elapsed_s = last_line.unwrap_or_else(|| started.elapsed()).as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.success(),
            "asyncmcp batch exited with {}: {stderr}",
            out.status
        );
        let api_calls = summary_api_calls(&stderr)
            .with_context(|| format!("no API call count in its summary: {stderr}"))?;
        self.cli_calls.fetch_add(api_calls, Ordering::Relaxed);
        let results = std::fs::read_to_string(&output)?;
        let mut result = RunResult {
            elapsed_s,
            ..RunResult::default()
        };
        let (mut answered, mut good_answers) = (0, 0);
        for line in results.lines() {
            let good = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| {
                    let texts = v.pointer("/result/content")?.as_array()?.clone();
                    Some(
                        texts
                            .iter()
                            .any(|c| c["text"].as_str().is_some_and(|t| t.contains(ECHOED)))
                            && v.pointer("/result/isError") != Some(&json!(true)),
                    )
                })
                .unwrap_or(false);
            answered += 1;
            if good {
                good_answers += 1;
            } else {
                tracing::warn!(line, "bad answer");
                result.errors += 1;
            }
        }
        result.errors += calls.saturating_sub(answered);
        result.answered = Some(good_answers);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(result)
    }
}

/// Counts the lines of a growing file, reading only what was added.
#[derive(Default)]
struct LineCounter {
    read: u64,
    lines: usize,
}

impl LineCounter {
    fn count(&mut self, path: &std::path::Path) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(path) else {
            return self.lines;
        };
        let mut added = Vec::new();
        if file.seek(SeekFrom::Start(self.read)).is_ok() && file.read_to_end(&mut added).is_ok() {
            self.read += added.len() as u64;
            self.lines += added.iter().filter(|&&b| b == b'\n').count();
        }
        self.lines
    }
}

/// The `echo` call with its one argument `field` = `"ping"`.
fn echo_call(field: &str) -> Call {
    let mut arguments = serde_json::Map::new();
    arguments.insert(field.to_owned(), ECHOED.into());
    Call::new("echo", Some(arguments))
}

/// An answer that is a result carrying what was sent.
fn check(answer: &Answer) -> anyhow::Result<()> {
    let result = answer
        .outcome
        .as_ref()
        .map_err(|e| anyhow::anyhow!("error answer: {e:?}"))?;
    anyhow::ensure!(result.is_error != Some(true), "tool error: {result:?}");
    let echoed = result
        .content
        .iter()
        .filter_map(|content| content.as_text())
        .any(|text| text.text.contains(ECHOED));
    anyhow::ensure!(echoed, "echo did not return {ECHOED:?}: {result:?}");
    Ok(())
}

/// The `N` of `N SQS API calls` in the command's summary line.
fn summary_api_calls(stderr: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.contains("SQS API calls"))?;
    let before = line.split(" SQS API calls").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_api_calls_of_the_summary() {
        let line = "asyncmcp batch: all 10 keys have results in out; this run: 10 answers in \
                    1.0 s (10.0 calls/s), 57 SQS API calls (5.70 per call)";
        assert_eq!(super::summary_api_calls(line), Some(57));
        assert_eq!(super::summary_api_calls("nothing"), None);
    }
}

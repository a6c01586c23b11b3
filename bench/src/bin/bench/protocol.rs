//! The line protocol between the bench and the processes it measures.
//!
//! Each measured process (our Rust roles in this binary, and the Python
//! peer `py_bench.py`) reads one JSON command per line on stdin and answers
//! with one JSON line on stdout; logs go to stderr. Closing stdin asks it to
//! stop. Every process first prints `{"ready": true}` once it is set up; a
//! server listening for HTTP adds where: `{"ready": true, "url": "…"}`.

use std::collections::BTreeMap;

use asyncmcp::queue::sqs::ApiCallCounter;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A command to a measured process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Make `calls` calls keeping `in_flight` outstanding (clients only).
    Run { calls: usize, in_flight: usize },
    /// Report the API calls made so far.
    Stats,
}

/// A client's answer to [`Command::Run`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Wall time of the whole level.
    pub elapsed_s: f64,
    /// Each call's latency.
    pub latencies_ms: Vec<f64>,
    /// Calls that failed or returned an error result.
    pub errors: usize,
    /// AWS API calls made since the process started.
    pub api_calls: u64,
    /// The same by operation (our processes only).
    #[serde(default)]
    pub operations: BTreeMap<String, u64>,
    /// Calls answered well, when the client cannot time each call (the
    /// `asyncmcp batch` command); otherwise the latencies count them.
    #[serde(default)]
    pub answered: Option<usize>,
}

/// The answer to [`Command::Stats`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// AWS API calls made since the process started.
    pub api_calls: u64,
    /// The same by operation (our processes only).
    #[serde(default)]
    pub operations: BTreeMap<String, u64>,
}

impl Stats {
    /// The counts of `counter` now.
    pub fn of(counter: &ApiCallCounter) -> Self {
        Self {
            api_calls: counter.total(),
            operations: counter.snapshot(),
        }
    }
}

/// Prints one protocol line.
pub async fn say(value: &impl Serialize) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    let mut out = tokio::io::stdout();
    out.write_all(&line).await?;
    out.flush().await?;
    Ok(())
}

/// Announces readiness, then answers commands with `handle` until stdin
/// closes.
pub async fn serve_commands<F, Fut>(handle: F) -> anyhow::Result<()>
where
    F: FnMut(Command) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    serve_commands_after(serde_json::json!({"ready": true}), handle).await
}

/// Prints `ready`, then answers commands with `handle` until stdin closes.
async fn serve_commands_after<F, Fut>(ready: serde_json::Value, mut handle: F) -> anyhow::Result<()>
where
    F: FnMut(Command) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    say(&ready).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Command>(&line) {
            Ok(command) => handle(command)
                .await
                .unwrap_or_else(|e| serde_json::json!({"error": format!("{e:#}")})),
            Err(e) => serde_json::json!({"error": format!("bad command {line:?}: {e}")}),
        };
        say(&answer).await?;
    }
    Ok(())
}

/// A server's command loop: it answers [`Command::Stats`] from `counter`.
pub async fn serve_server(counter: &ApiCallCounter) -> anyhow::Result<()> {
    serve_server_after(serde_json::json!({"ready": true}), counter).await
}

/// The command loop of a server taking requests at `url` (over HTTP, so it
/// makes no AWS API calls): `url` is in its ready line.
pub async fn serve_server_at(url: &str) -> anyhow::Result<()> {
    let ready = serde_json::json!({"ready": true, "url": url});
    serve_server_after(ready, &ApiCallCounter::new()).await
}

async fn serve_server_after(
    ready: serde_json::Value,
    counter: &ApiCallCounter,
) -> anyhow::Result<()> {
    serve_commands_after(ready, |command| {
        let counter = counter.clone();
        async move {
            match command {
                Command::Stats => Ok(serde_json::to_value(Stats::of(&counter))?),
                Command::Run { .. } => anyhow::bail!("a server does not run calls"),
            }
        }
    })
    .await
}

/// A client's command loop: [`Command::Run`] runs a level of `call`;
/// counts come from `counter`.
pub async fn serve_client<F, Fut>(counter: &ApiCallCounter, call: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    serve_commands(|command| {
        let (call, counter) = (call.clone(), counter.clone());
        async move {
            match command {
                Command::Stats => Ok(serde_json::to_value(Stats::of(&counter))?),
                Command::Run { calls, in_flight } => {
                    let mut result = crate::run_level(calls, in_flight, call).await;
                    let stats = Stats::of(&counter);
                    (result.api_calls, result.operations) = (stats.api_calls, stats.operations);
                    Ok(serde_json::to_value(result)?)
                }
            }
        }
    })
    .await
}

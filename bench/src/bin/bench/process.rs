//! The measured processes, seen from the bench: spawning, talking the line
//! protocol, and reading CPU time and peak RSS from `/proc`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};

use crate::protocol::{Command, Stats};

/// How long a process may take to set up (connect, initialize, warm up).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One measured process.
pub struct Measured {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Its ready line.
    ready: serde_json::Value,
}

/// CPU time and peak resident memory of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User plus system CPU seconds, all threads.
    pub cpu_s: f64,
    /// Peak resident set (VmHWM), in MiB.
    pub peak_rss_mib: f64,
}

impl Measured {
    /// Starts `program args` with stdin and stdout piped (stderr inherited)
    /// and waits for its `{"ready": true}`.
    pub async fn start(name: &str, program: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Process::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}: {program}"))?;
        let stdin = child.stdin.take().context("piped stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
        let mut process = Self {
            name: name.to_owned(),
            child,
            stdin: Some(stdin),
            stdout,
            ready: serde_json::Value::Null,
        };
        let ready: serde_json::Value =
            tokio::time::timeout(READY_TIMEOUT, process.read())
                .await
                .with_context(|| format!("{name} was not ready within {READY_TIMEOUT:?}"))??;
        if ready.get("ready") != Some(&serde_json::Value::Bool(true)) {
            bail!("{name} did not start: {ready}");
        }
        process.ready = ready;
        Ok(process)
    }

    /// The URL in its ready line: where a server listening for HTTP takes
    /// requests.
    pub fn url(&self) -> anyhow::Result<String> {
        self.ready["url"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} named no URL: {}", self.name, self.ready))
    }

    /// Sends `command` and reads the answer.
    pub async fn ask<T: DeserializeOwned>(&mut self, command: &Command) -> anyhow::Result<T> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        let answer: serde_json::Value = self.read().await?;
        if let Some(error) = answer.get("error") {
            bail!("{} failed: {error}", self.name);
        }
        serde_json::from_value(answer).with_context(|| format!("{}: unexpected answer", self.name))
    }

    /// AWS API calls the process has made so far.
    pub async fn stats(&mut self) -> anyhow::Result<Stats> {
        self.ask(&Command::Stats).await
    }

    /// CPU time and peak RSS so far, with those of its children (see
    /// [`read_tree_usage`]).
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.child.id().context("process already exited")?;
        read_tree_usage(pid).with_context(|| format!("reading /proc/{pid} of {}", self.name))
    }

    /// Closes stdin and waits for a clean exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .with_context(|| format!("{} did not stop within 60 s", self.name))??;
        if !status.success() {
            bail!("{} exited with {status}", self.name);
        }
        Ok(())
    }

    async fn read<T: DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let line = self
            .stdout
            .next_line()
            .await?
            .with_context(|| format!("{} exited (see its stderr above)", self.name))?;
        serde_json::from_str(&line).with_context(|| format!("{}: bad line {line:?}", self.name))
    }
}

/// Linux reports CPU time in `/proc/<pid>/stat` in clock ticks of
/// `USER_HZ`, which the kernel's user-space ABI fixes at 100.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time and peak RSS of any process.
pub fn read_usage(pid: u32) -> anyhow::Result<Usage> {
    read_own_usage(pid).map(|(usage, _)| usage)
}

/// CPU time and peak RSS of a process with its children: the CPU time of
/// the children it has waited for (`cutime`, `cstime`) and of its live
/// descendants, and the sum of its and its live descendants' peak RSS.
/// A server that runs its tools in child processes (`asyncmcp serve` and
/// the process-per-request baseline) is then charged for them; for a
/// process without children this is [`read_usage`].
pub fn read_tree_usage(pid: u32) -> anyhow::Result<Usage> {
    let (mut total, waited_cpu_s) = read_own_usage(pid)?;
    total.cpu_s += waited_cpu_s;
    for child in descendants(pid) {
        // A child may exit between listing and reading: it is then counted
        // in the parent's waited-for time once reaped.
        if let Ok(usage) = read_usage(child) {
            total.cpu_s += usage.cpu_s;
            total.peak_rss_mib += usage.peak_rss_mib;
        }
    }
    Ok(total)
}

/// The live descendants of `pid`, from `/proc/<pid>/task/*/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut pending = vec![pid];
    while let Some(parent) = pending.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                pending.push(child);
            }
        }
    }
    found
}

/// A process's own usage, and the CPU seconds of the children it waited for.
fn read_own_usage(pid: u32) -> anyhow::Result<(Usage, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) in ")".
    let rest = stat.rsplit_once(')').context("no ')' in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i - 3).context("short stat")?.parse::<f64>()?)
    };
    let cpu_s = (ticks(14)? + ticks(15)?) / TICKS_PER_SECOND;
    // cutime and cstime, fields 16 and 17.
    let waited_cpu_s = (ticks(16)? + ticks(17)?) / TICKS_PER_SECOND;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("no VmHWM in status")?;
    Ok((
        Usage {
            cpu_s,
            peak_rss_mib: peak_kib / 1024.0,
        },
        waited_cpu_s,
    ))
}

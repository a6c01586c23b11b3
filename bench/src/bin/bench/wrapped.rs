//! `asyncmcp serve` as a measured server: the built binary wrapping a stdio
//! MCP server, started and stopped the way an operator would.
//!
//! It does not talk the bench's line protocol: it is ready when it prints
//! its `ready` line on stderr, it is stopped with SIGTERM (it drains and
//! exits 0), and its AWS API calls are not counted (its SDK clients are its
//! own). CPU time and peak RSS include the wrapped server's processes.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command as Process};

use crate::process::{self, Measured, Usage};
use crate::protocol::Stats;

/// How long `asyncmcp serve` may take to start its server process.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The line `asyncmcp serve` prints on stderr once it receives requests.
const READY_LINE: &str = "asyncmcp serve: ready";

/// A running `asyncmcp serve`.
pub struct Wrapped {
    child: Child,
}

impl Wrapped {
    /// Starts `program args` (an `asyncmcp serve` command line) and waits
    /// for its ready line; its other stderr lines are passed on to ours.
    pub async fn start(program: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Process::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {program}; scripts/bench.sh builds it"))?;
        let mut lines = BufReader::new(child.stderr.take().context("piped stderr")?).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                eprintln!("{line}");
                if line.starts_with(READY_LINE) {
                    return Ok(true);
                }
            }
            anyhow::Ok(false)
        };
        match tokio::time::timeout(READY_TIMEOUT, ready).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => bail!("asyncmcp serve exited before it was ready (see above)"),
            Ok(Err(e)) => return Err(e.context("reading asyncmcp serve's stderr")),
            Err(_) => bail!("asyncmcp serve was not ready within {READY_TIMEOUT:?}"),
        }
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
            }
        });
        Ok(Self { child })
    }

    /// CPU time and peak RSS so far, with its server processes'.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.child.id().context("asyncmcp serve already exited")?;
        process::read_tree_usage(pid).with_context(|| format!("reading /proc/{pid}"))
    }

    /// Sends SIGTERM and waits for the clean exit it promises.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("asyncmcp serve already exited")?;
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("asyncmcp serve did not stop within 60 s of SIGTERM")??;
        anyhow::ensure!(status.success(), "asyncmcp serve exited with {status}");
        Ok(())
    }
}

/// A measured server: one of this binary's roles or Python's (line
/// protocol), or `asyncmcp serve`.
pub enum Server {
    Measured(Box<Measured>),
    Wrapped(Wrapped),
}

impl Server {
    /// AWS API calls so far (none counted for `asyncmcp serve`).
    pub async fn stats(&mut self) -> anyhow::Result<Stats> {
        match self {
            Server::Measured(m) => m.stats().await,
            Server::Wrapped(_) => Ok(Stats::default()),
        }
    }

    /// Where it takes requests over HTTP (servers of the stacks over HTTP).
    pub fn url(&self) -> anyhow::Result<String> {
        match self {
            Server::Measured(m) => m.url(),
            Server::Wrapped(_) => bail!("asyncmcp serve here takes requests from a queue"),
        }
    }

    /// CPU time and peak RSS so far.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        match self {
            Server::Measured(m) => m.usage(),
            Server::Wrapped(w) => w.usage(),
        }
    }

    /// Stops it and checks that it exited cleanly.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Server::Measured(m) => m.stop().await,
            Server::Wrapped(w) => w.stop().await,
        }
    }
}

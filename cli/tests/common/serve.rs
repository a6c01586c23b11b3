//! Running `asyncmcp serve` as the tests see it: the built binary in the
//! background, ready once it says so on stderr, killed when the test ends.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncmcp_testkit::aws::LocalStack;
use asyncmcp_testkit::{eventually, real_clients};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use super::Run;

/// What `serve` says on stderr once it polls its queue.
pub const READY: &str = "asyncmcp serve: ready: ";

/// How long a test waits for a line on `serve`'s stderr, the ready line
/// first: the first start of a Node or Python server on a busy 2-core
/// machine takes a few seconds.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// The settings `serve` (and the subcommands) read from the environment:
/// removed from a run's environment unless the test sets them, so that the
/// caller's shell does not change what a test checks.
const SERVE_VARS: [&str; 31] = [
    "ASYNCMCP_QUEUE_URL",
    "ASYNCMCP_OFFLOAD_BUCKET",
    "ASYNCMCP_FULL_ATTRIBUTES",
    "ASYNCMCP_TOPIC_ARN",
    "ASYNCMCP_REPLY_QUEUE_URL",
    "ASYNCMCP_CLIENT_ID",
    "ASYNCMCP_TIMEOUT",
    "ASYNCMCP_SHARED_REPLY_TOPIC",
    "ASYNCMCP_CHILDREN",
    "ASYNCMCP_MAX_IN_FLIGHT",
    "ASYNCMCP_POLLERS",
    "ASYNCMCP_REQUEST_TIMEOUT",
    "ASYNCMCP_SHUTDOWN_GRACE",
    "ASYNCMCP_START_TIMEOUT",
    "ASYNCMCP_DEAD_LETTER_QUEUE",
    "ASYNCMCP_MAX_RECEIVE_COUNT",
    "ASYNCMCP_REQUIRE_SIGNATURES",
    "ASYNCMCP_SIGNING_KEY",
    "ASYNCMCP_SIGNING_KEY_PREVIOUS",
    "ASYNCMCP_SESSION_KEY",
    "ASYNCMCP_SESSION_KEY_PREVIOUS",
    "ASYNCMCP_WEBHOOK_LISTEN",
    "ASYNCMCP_REPLY_WEBHOOK",
    "ASYNCMCP_WEBHOOK_SECRET",
    "ASYNCMCP_TASKS",
    "ASYNCMCP_TASK_TOOLS",
    "ASYNCMCP_TASK_STORE",
    "ASYNCMCP_TASK_TTL",
    "ASYNCMCP_DEFAULT_TOOL_LIMIT",
    "ASYNCMCP_CALLER_LIMIT",
    "ASYNCMCP_MAX_LIMIT_WAIT",
];

/// `node server-everything`: the stock MCP reference server, as the
/// command words after `--`.
pub fn server_everything() -> Vec<String> {
    [real_clients::node(), real_clients::server_everything()]
        .iter()
        .map(|path| path.display().to_string())
        .collect()
}

/// The command `asyncmcp ARGS` with LocalStack's AWS settings, none of the
/// developer's `ASYNCMCP_*` settings and `env` set; pipes on every stream.
pub fn command(ls: &LocalStack, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    command.env_remove("AWS_PROFILE").env_remove("ASYNCMCP_LOG");
    for name in SERVE_VARS {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(ls.aws_env())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `asyncmcp ARGS` (e.g. `serve ... -- cmd`, `call ...`) to its end,
/// within 120 s (past a call's own `--timeout 90s`), with only the settings
/// given in `env`.
pub async fn run_to_end(ls: &LocalStack, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(120), command(ls, args, env).output())
        .await
        .expect("asyncmcp finished within 120 s")
        .expect("run asyncmcp");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running `asyncmcp serve`, killed when dropped.
pub struct Serve {
    child: Child,
    pid: u32,
    /// The arguments after `serve`, named when a wait fails.
    args: Vec<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// `asyncmcp serve --queue-url QUEUE -- COMMAND...`, once ready.
    pub async fn start(ls: &LocalStack, queue: &str, command: &[String]) -> Self {
        let mut args = vec!["--queue-url", queue, "--"];
        args.extend(command.iter().map(String::as_str));
        Self::start_with(ls, &args, &[]).await
    }

    /// `asyncmcp serve ARGS` with `env` set, once it has printed its ready
    /// line; panics with its stderr if it exits first or is not ready
    /// within [`READY_WITHIN`].
    pub async fn start_with(ls: &LocalStack, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let mut child = command(ls, &full, env)
            .spawn()
            .expect("spawn asyncmcp serve");
        let pid = child.id().expect("a pid");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        let mut serve = Serve {
            child,
            pid,
            args: args.iter().map(|arg| arg.to_string()).collect(),
            stdout,
            stderr,
        };
        serve.wait_for_stderr(READY).await;
        serve
    }

    /// Waits until `serve` has said `needle` on stderr; panics with its
    /// stderr if it exits first or does not say it within
    /// [`READY_WITHIN`].
    pub async fn wait_for_stderr(&mut self, needle: &str) {
        let stderr = self.stderr.clone();
        let said = || stderr.lock().is_ok_and(|text| text.contains(needle));
        tokio::select! {
            said = eventually(READY_WITHIN, said) => {
                assert!(
                    said,
                    "asyncmcp serve {:?} did not say {needle:?} within {READY_WITHIN:?}; stderr:\n{}",
                    self.args,
                    self.stderr()
                );
            }
            status = self.child.wait() => {
                // Let the reader take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "asyncmcp serve {:?} exited ({status:?}) before it said {needle:?}; stderr:\n{}",
                    self.args,
                    self.stderr()
                );
            }
        }
    }

    /// Panics, with its stderr, unless `serve` is still running.
    pub fn assert_running(&mut self) {
        let exited = self.child.try_wait().expect("check on asyncmcp serve");
        assert!(
            exited.is_none(),
            "asyncmcp serve exited ({exited:?}); stderr:\n{}",
            self.stderr()
        );
    }

    /// The process id of `serve`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What `serve` wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What `serve` wrote on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The processes `serve` started (its server processes), by pid.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid)
    }

    /// Sends `signal` (a name `kill -s` knows: `TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} {}", self.pid);
    }

    /// Waits for `serve` to exit, up to `within`; panics with its stderr if
    /// it does not.
    pub async fn wait(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait for asyncmcp serve");
                // Let the readers take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                status
            }
            Err(_) => panic!(
                "asyncmcp serve did not exit within {within:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGKILL leaves its server processes behind, and once it is dead
        // they are no longer its children: name them first, kill them after
        // it (so that it restarts none of them in between).
        let children = self.children();
        let _ = self.child.start_kill();
        for pid in children {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Reads `stream` line by line into `into`.
fn collect(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut text) = into.lock() {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
}

/// The live processes whose parent is `parent` (from `/proc`).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            process_status(*pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z')
        })
        .collect()
}

/// Whether process `pid` is still running (exists and is not a zombie).
pub fn is_running(pid: u32) -> bool {
    process_status(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The state letter and the parent pid of process `pid`, from
/// `/proc/PID/stat`.
fn process_status(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

//! Running the built `asyncmcp` binary against the test binary's LocalStack.

#![allow(dead_code, reason = "each test file uses its own part")]

pub mod fault;
pub mod marks;
pub mod serve;

use std::process::ExitStatus;

use asyncmcp_testkit::aws::LocalStack;
use serde_json::Value;

/// The `ASYNCMCP_*` variables the subcommands read: removed from a run's
/// environment unless the test sets them, so that the caller's shell does
/// not change what a test checks.
const SETTINGS: [&str; 9] = [
    "ASYNCMCP_QUEUE",
    "ASYNCMCP_FIFO",
    "ASYNCMCP_MAX_RECEIVE_COUNT",
    "ASYNCMCP_TOPIC",
    "ASYNCMCP_REPLY_TOPIC",
    "ASYNCMCP_REPLY_QUEUE",
    "ASYNCMCP_DLQ_URL",
    "ASYNCMCP_QUEUE_URL",
    "ASYNCMCP_LOG",
];

/// What a run of the binary left.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics, showing both streams, unless the run succeeded.
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "asyncmcp failed: {self:#?}");
        self
    }

    /// The text of the first content block of a successful `asyncmcp call`'s
    /// result (its JSON on stdout).
    pub fn text(&self) -> String {
        assert_eq!(self.status.code(), Some(0), "the call succeeded: {self:#?}");
        let result: Value = serde_json::from_str(&self.stdout).expect("a JSON result");
        result["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("a text result: {self:#?}"))
            .to_owned()
    }

    /// Panics unless the run failed with exit code 1 and said `needle` on
    /// stderr, with nothing on stdout.
    pub fn failed_saying(self, needle: &str) -> Self {
        assert_eq!(self.status.code(), Some(1), "{self:#?}");
        assert!(
            self.stderr.contains(needle),
            "stderr names {needle:?}: {self:#?}"
        );
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:#?}");
        self
    }
}

/// Runs `asyncmcp ARGS` with LocalStack's AWS settings.
pub async fn asyncmcp(localstack: &LocalStack, args: &[&str]) -> Run {
    asyncmcp_with(localstack, args, &[]).await
}

/// Runs `asyncmcp ARGS` with LocalStack's AWS settings and `env` set.
pub async fn asyncmcp_with(localstack: &LocalStack, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_asyncmcp"));
    command.args(args).env_remove("AWS_PROFILE");
    for name in SETTINGS {
        command.env_remove(name);
    }
    command.envs(localstack.aws_env()).envs(env.iter().copied());
    let output = command.output().await.expect("run asyncmcp");
    Run {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("UTF-8 on stdout"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

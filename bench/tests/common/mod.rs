//! What every bench smoke test does: run the built `bench` binary against
//! the test binary's LocalStack, check that it succeeded, and read its
//! report (stdout) and its results (the `--json` file).

#![allow(dead_code, reason = "each test file uses its own part")]

use std::path::{Path, PathBuf};

use asyncmcp_testkit::aws::LocalStack;
use serde_json::Value;
use tokio::process::Command;

/// One finished bench run. Its scratch folder goes when it is dropped.
pub struct Run {
    /// The report the bench printed.
    pub stdout: String,
    /// The rows of its `--json` results.
    pub rows: Vec<Value>,
    dir: PathBuf,
}

impl Run {
    /// The run's scratch folder (for files it was asked to write).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Asserts that the report has each of `lines` (any part of a line).
    pub fn assert_has(&self, lines: &[&str]) {
        for line in lines {
            assert!(
                self.stdout.contains(line),
                "no {line:?} in\n{}",
                self.stdout
            );
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the bench with `args` (and whatever `extra` adds, given the run's
/// scratch folder) against `ls`, writing its results to a JSON file, and
/// fails the test with its stderr when it does not succeed.
pub async fn run_bench(
    ls: &LocalStack,
    name: &str,
    args: &[&str],
    extra: impl FnOnce(&mut Command, &Path),
) -> Run {
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("results.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench"));
    command
        .args(args)
        .arg("--json")
        .arg(&json)
        .envs(ls.aws_env())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    extra(&mut command, &dir);
    let output = command.output().await.expect("run bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = serde_json::from_slice(&std::fs::read(&json).expect("results written"))
        .expect("results are JSON rows");
    Run { stdout, rows, dir }
}

/// The `asyncmcp` binary beside the bench's: `cargo test --workspace` (and
/// so scripts/test.sh) builds it before running any test.
pub fn asyncmcp_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_bench")).with_file_name("asyncmcp");
    assert!(
        path.is_file(),
        "no asyncmcp binary at {}: build it first with `cargo build -p asyncmcp-cli` \
         (scripts/test.sh builds the whole workspace)",
        path.display()
    );
    path
}

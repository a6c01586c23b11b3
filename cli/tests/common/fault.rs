//! `asyncmcp serve` running `servers/fault_server.py` (Python MCP SDK 2.x),
//! which appends `TAG PID` to a runs file for every tool run, so a test can
//! tell how often a call ran, and on which process.

use std::path::{Path, PathBuf};

use asyncmcp_testkit::aws::LocalStack;
use asyncmcp_testkit::{real_clients, unique_name};

use super::serve::Serve;

/// A directory of its own for one test's runs file, removed when dropped.
pub struct FaultDir(pub PathBuf);

impl FaultDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(unique_name("serve-faults"));
        std::fs::create_dir_all(&path).expect("create the fault directory");
        Self(path)
    }

    /// The runs so far: `(tag, pid)` in the order they started.
    pub fn runs(&self) -> Vec<(String, u32)> {
        let text = std::fs::read_to_string(self.0.join("runs")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (tag, pid) = line.rsplit_once(' ')?;
                Some((tag.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }

    /// The pids that ran `tag`, in order.
    pub fn runs_of(&self, tag: &str) -> Vec<u32> {
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

/// `asyncmcp serve` on `queue` with `flags`, running the fault server,
/// which sees `env` and records its runs in `dir`; once ready.
pub async fn start_serve(
    ls: &LocalStack,
    queue: &str,
    dir: &FaultDir,
    flags: &[&str],
    env: &[(&str, &str)],
) -> Serve {
    let python = real_clients::mcp2_python().display().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/servers/fault_server.py")
        .display()
        .to_string();
    let mut args = vec!["--queue-url", queue];
    args.extend_from_slice(flags);
    args.extend(["--", &python, &script]);
    let dir = dir.0.to_str().expect("a UTF-8 temporary directory");
    // Warnings only, unless the test asks for more (a later setting wins).
    let mut all = vec![("FAULT_DIR", dir), ("ASYNCMCP_LOG", "warn")];
    all.extend_from_slice(env);
    Serve::start_with(ls, &args, &all).await
}

//! Small helpers shared by the examples (and the tests): logging set-up and
//! building and reading `tools/call` requests.

use rmcp::model::{CallToolRequestParams, CallToolResult};

/// Logs through `tracing` to stderr; `RUST_LOG` overrides `default`.
pub fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        // stdout is for results (sqs_client prints JSON, sqs_server READY).
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}

/// A `tools/call` of `name` with `arguments` (a JSON object).
pub fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default())
}

/// The text content of a tool result, concatenated.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

/// What cargo sets for a test it runs, besides `CARGO_PKG_*` (and `CARGO`,
/// the path of cargo itself, which stays).
const CARGO_TEST_VARS: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// The library's example binary `name`, built now: `cargo test --test X`
/// alone does not build examples, and a stale one would test old code. For
/// the library's integration tests (it finds the target directory from the
/// running test binary).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    // `--workspace`: the features of shared dependencies are resolved over
    // every member, as the workspace's own test build resolves them. For the
    // root package alone they differ (rmcp's, say), and the build would
    // compile rmcp, the library and the test kit again, twice over a run.
    let mut build = std::process::Command::new(env!("CARGO"));
    build.args(["build", "--workspace", "--all-features", "--example", name]);
    // Without the variables cargo sets for a running test: a build script
    // that reruns when one changes (ring's, on `CARGO_MANIFEST_DIR`) would
    // see them here and not in the workspace's build, and each build would
    // compile it and everything above it (the AWS SDK) again.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_") || CARGO_TEST_VARS.contains(&key) {
            build.env_remove(key);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

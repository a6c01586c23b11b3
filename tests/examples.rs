//! The SQS examples work as documented: `sqs_server` serves, `sqs_client`
//! calls a tool through it, on LocalStack.
#![cfg(feature = "sqs")]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The built example binary `name` (cargo test builds the examples).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let path = profile_dir.join("examples").join(name);
    if !path.is_file() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--all-features", "--example", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --example {name} failed");
    }
    path
}

#[tokio::test]
async fn sqs_server_and_sqs_client_complete_a_tool_call() {
    let ls = common::localstack().await;
    let requests = ls.create_queue("example-requests").await;

    let mut server = tokio::process::Command::new(example("sqs_server"))
        .args(["--queue-url", &requests])
        .envs(ls.aws_env())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sqs_server");
    let stdout = server.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("sqs_server printed nothing within 30 s")
        .expect("read stdout");
    assert!(
        ready.is_some_and(|l| l.starts_with("READY")),
        "sqs_server did not start"
    );

    for protocol in ["initialize", "2026-07-28"] {
        let output = tokio::process::Command::new(example("sqs_client"))
            .args([
                "--queue-url",
                &requests,
                "--tool",
                "add",
                "--args",
                r#"{"a": 2, "b": 3}"#,
            ])
            .args(["--protocol", protocol])
            .envs(ls.aws_env())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("sqs_client finished within 60 s")
            .expect("run sqs_client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "sqs_client ({protocol}) failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        let result: serde_json::Value = serde_json::from_str(&stdout).expect("JSON result");
        assert_eq!(result["content"][0]["text"], "5", "{protocol}: {result}");
    }

    // SIGTERM stops the server gracefully: it lets its long polls in
    // progress finish (up to the 20 s wait) rather than abandon them.
    let pid = server.id().expect("server pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("sqs_server stopped within 30 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "sqs_server exited with {status}");
}

//! `--offload-bucket` on `asyncmcp serve` and `asyncmcp call`: a 3 MiB
//! argument and its 3 MiB echo through a 1 MiB queue, by way of S3, with no
//! object left after; and a call without the flag fails clearly instead.
//!
//! Needs LocalStack with S3 and server-everything: `scripts/test.sh` starts
//! and installs them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use asyncmcp_testkit::aws::{self, s3::TestBucket};
use common::serve::{Serve, command, server_everything};
use tokio::io::AsyncWriteExt;

const MIB: usize = 1024 * 1024;

/// `asyncmcp call ARGS echo -` with `{"message": message}` on stdin.
async fn call_echo(ls: &aws::LocalStack, args: &[&str], message: &str) -> std::process::Output {
    let mut full = vec!["call"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--timeout", "90s", "echo", "-"]);
    let mut child = command(ls, &full, &[])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run asyncmcp call");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = serde_json::json!({ "message": message }).to_string();
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("write stdin");
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("call finished within 120 s")
        .expect("call ran")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_3_mib_call_goes_through_s3_and_leaves_nothing() {
    let ls = aws::localstack().await;
    let bucket = TestBucket::create("cli-offload").await;
    let queue = ls.create_queue("cli-offload").await;
    let offload = format!("{}/mcp", bucket.name);
    let mut args = vec!["--queue-url", &queue, "--offload-bucket", &offload, "--"];
    let everything = server_everything();
    args.extend(everything.iter().map(String::as_str));
    let mut serve = Serve::start_with(ls, &args, &[]).await;

    let message = "0123456789abcdef".repeat(3 * MIB / 16);
    let output = call_echo(
        ls,
        &["--queue-url", &queue, "--offload-bucket", &offload],
        &message,
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&message),
        "the echo is not in the output ({} bytes)",
        stdout.len()
    );
    assert_eq!(
        bucket.drained().await,
        Vec::<String>::new(),
        "objects left behind"
    );

    // Without the flag, the request is too large for the queue: it fails
    // at the caller with both sizes, and nothing is sent.
    let output = call_echo(ls, &["--queue-url", &queue], &message).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1048576"), "{stderr}");

    serve.assert_running();
    drop(serve);
    bucket.delete().await;
}

//! The server and client examples work as documented, on LocalStack:
//! `sqs_server` + `sqs_client`, `sns_sqs_server` + `sns_sqs_client`, and `bench`.
#![cfg(feature = "sqs")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use asyncmcp_testkit::aws;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The example binary `name`, built now: `cargo test --test examples`
/// alone does not build examples, and a stale one would test old code.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--all-features", "--example", name])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

/// Starts `server` with `server_args`, waits for READY, runs `client` once
/// per entry of `client_runs` (each calls `add` 2 + 3 and must print a
/// result of 5), then stops the server with SIGTERM, which must exit 0.
async fn server_serves_client_runs(
    ls: &aws::LocalStack,
    server: &str,
    server_args: &[&str],
    client: &str,
    client_runs: &[Vec<&str>],
) {
    let mut server_process = tokio::process::Command::new(example(server))
        .args(server_args)
        .envs(ls.aws_env())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {server}: {e}"));
    let stdout = server_process.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{server} printed nothing within 30 s"))
        .expect("read stdout");
    assert!(
        ready.is_some_and(|l| l.starts_with("READY")),
        "{server} did not start"
    );

    for run in client_runs {
        let output = tokio::process::Command::new(example(client))
            .args(run)
            .args(["--tool", "add", "--args", r#"{"a": 2, "b": 3}"#])
            .envs(ls.aws_env())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .unwrap_or_else(|_| panic!("{client} {run:?} finished within 60 s"))
            .expect("run client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{client} {run:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        let result: serde_json::Value = serde_json::from_str(&stdout).expect("JSON result");
        assert_eq!(result["content"][0]["text"], "5", "{run:?}: {result}");
    }

    // SIGTERM stops the server gracefully: it lets its long polls in
    // progress finish (up to the 20 s wait) rather than abandon them.
    let pid = server_process.id().expect("server pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), server_process.wait())
        .await
        .unwrap_or_else(|_| panic!("{server} stopped within 30 s of SIGTERM"))
        .expect("wait");
    assert!(status.success(), "{server} exited with {status}");
}

#[tokio::test]
async fn sqs_server_and_sqs_client_complete_a_tool_call() {
    let ls = aws::localstack().await;
    let requests = ls.create_queue("example-requests").await;
    server_serves_client_runs(
        ls,
        "sqs_server",
        &["--queue-url", &requests],
        "sqs_client",
        &[
            vec!["--queue-url", &requests, "--protocol", "initialize"],
            vec!["--queue-url", &requests, "--protocol", "2026-07-28"],
        ],
    )
    .await;
}

/// The SNS examples, with a reply topic of the client's own (legacy
/// lifecycle) and with a shared reply topic and a filter policy (stateless
/// lifecycle).
#[cfg(feature = "sns")]
#[tokio::test]
async fn sns_sqs_server_and_sns_sqs_client_complete_a_tool_call() {
    use asyncmcp::queue::{sns, sqs};
    let ls = aws::localstack().await;
    let sdk = ls.sdk_config().await;
    let (sqs_client, sns_client) = (sqs::client(&sdk), sns::client(&sdk));
    let requests = aws::TopicQueue::create(&sqs_client, &sns_client, "example-sns", true).await;
    let shared = sns::create_topic(
        &sns_client,
        &asyncmcp_testkit::unique_name("example-replies"),
        &Default::default(),
    )
    .await
    .expect("reply topic");

    server_serves_client_runs(
        ls,
        "sns_sqs_server",
        &["--queue-url", &requests.queue],
        "sns_sqs_client",
        &[
            vec!["--topic-arn", &requests.topic, "--protocol", "initialize"],
            vec![
                "--topic-arn",
                &requests.topic,
                "--shared-reply-topic-arn",
                &shared,
                "--protocol",
                "2026-07-28",
            ],
        ],
    )
    .await;
    requests.delete(&sqs_client, &sns_client).await;
    let _ = sns::delete_topic(&sns_client, &shared).await;
}

/// The bench measures every kind of stack end to end (a few calls each) and
/// writes its results and plot: process roles, the line protocol, API call
/// counting on both sides (SDK interceptor and boto3 hooks) and `/proc`
/// readings all work.
#[cfg(feature = "sns")]
#[tokio::test]
async fn bench_measures_every_stack() {
    let ls = aws::localstack().await;
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("bench"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (json, svg) = (dir.join("results.json"), dir.join("plot.svg"));
    let output = tokio::process::Command::new(example("bench"))
        .args(["--stacks", "raw,sqs,sns-sqs,python-poll0"])
        .args(["--calls", "12", "--python-calls", "6", "--in-flight", "1,3"])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .envs(ls.aws_env())
        .env("BENCH_PYTHON", asyncmcp_testkit::py_peer::py_peer_python())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| asyncmcp SQS | 3 | 12 | 0 |"), "{stdout}");
    assert!(stdout.contains("calls/s at 20 in flight"), "{stdout}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("results written")).expect("JSON");
    assert_eq!(rows.len(), 8, "4 stacks x 2 levels: {rows:#?}");
    for row in &rows {
        let stack = row["stack"].as_str().unwrap_or_default();
        let figure = |name: &str| row[name].as_f64().unwrap_or(-1.0);
        assert_eq!(row["errors"], 0, "{row}");
        assert!(
            figure("calls_per_s") > 0.0 && figure("p99_ms") >= figure("p50_ms"),
            "{row}"
        );
        assert!(
            figure("server_peak_rss_mib") > 1.0 && figure("client_peak_rss_mib") > 1.0,
            "{row}"
        );
        // One call at a time costs a send, a receive and a delete on each
        // side; the Python peer never batches.
        let api = figure("api_calls_per_call");
        if row["in_flight"] == 1 || stack == "python-poll0" {
            assert!(api >= 4.0, "{row}");
        } else {
            assert!(api > 0.5, "{row}");
        }
        let operations = row["operations"].as_object().map_or(0, |o| o.len());
        if stack == "python-poll0" {
            assert_eq!(operations, 0, "{row}");
        } else {
            assert!(operations >= 6, "{row}");
        }
    }
    let plot = std::fs::read_to_string(&svg).expect("plot written");
    assert!(
        plot.starts_with("<svg") && plot.contains("asyncmcp SNS+SQS"),
        "{plot:.200}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

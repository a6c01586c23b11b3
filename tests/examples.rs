//! The server and client examples work as documented, on LocalStack:
//! `sqs_server` + `sqs_client` and `sns_sqs_server` + `sns_sqs_client`; and
//! `webhook_server` + `webhook_client` on loopback, signed. (The bench's
//! own test is in bench/tests/bench.rs.) And the one-process `hybrid` example,
//! which needs no LocalStack.
#![cfg(feature = "sqs")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use asyncmcp_testkit::aws;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The example binary `name`, built now.
fn example(name: &str) -> PathBuf {
    asyncmcp_testkit::support::example_binary(name)
}

/// Starts `server` with `server_args`, waits for READY, runs `client` once
/// per entry of `client_runs` (each calls `add` 2 + 3 and must print a
/// result of 5), then stops the server with SIGTERM, which must exit 0.
/// Both run with `env` beside LocalStack's settings.
async fn server_serves_client_runs(
    ls: &aws::LocalStack,
    env: &[(&str, &str)],
    server: &str,
    server_args: &[&str],
    client: &str,
    client_runs: &[Vec<&str>],
) {
    let mut server_process = tokio::process::Command::new(example(server))
        .args(server_args)
        .envs(ls.aws_env())
        .envs(env.iter().copied())
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
            .envs(env.iter().copied())
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
        &[],
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
        &[],
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

/// The webhook examples as their docs run them: signed both ways with a
/// secret from the environment, replies to a loopback receiver.
#[cfg(feature = "webhook")]
#[tokio::test]
async fn webhook_server_and_webhook_client_complete_a_signed_tool_call() {
    let ls = aws::localstack().await;
    // A free loopback port for the server (bound and let go).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}/mcp/request");
    let secret = format!(
        "whsec_{}",
        "c2VjcmV0LWZvci10aGUtZXhhbXBsZXMtdGVzdC0xMjM0NTY="
    );
    server_serves_client_runs(
        ls,
        &[("ASYNCMCP_WEBHOOK_SECRET", &secret)],
        "webhook_server",
        &["--listen", &listen, "--allow-loopback"],
        "webhook_client",
        &[vec!["--server-url", &url]],
    )
    .await;
}

/// `cargo run --features hybrid --example hybrid` works as its docs say:
/// echo answered on its stream, sleep answered 202, its progress and result
/// reaching the signature-checking receiver. Needs no LocalStack.
#[tokio::test]
async fn the_hybrid_example_delivers_a_signed_result_at_the_webhook() {
    let run = tokio::process::Command::new(example("hybrid"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the hybrid example ran over 60 s")
        .expect("spawning the hybrid example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the hybrid example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("echo: HTTP 200"), "{stdout}");
    assert!(stdout.contains("on the stream"), "{stdout}");
    assert!(stdout.contains("sleep: HTTP 202"), "{stdout}");
    let delivered: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("at the webhook (signature checked)"))
        .collect();
    assert_eq!(delivered.len(), 5, "{stdout}");
    assert!(
        delivered[..4]
            .iter()
            .all(|line| line.contains("notifications/progress"))
    );
    assert!(delivered[4].contains("slept 400 ms"), "{stdout}");
}

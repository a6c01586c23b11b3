//! The bench's `--scenario serve` runs end to end on LocalStack: the
//! library's server, the `asyncmcp serve` binary wrapping server-everything,
//! and the process-per-request baseline, a few calls each.

use std::path::PathBuf;

use asyncmcp_testkit::{aws, real_clients};

/// The `asyncmcp` binary beside the bench's: `cargo test --workspace` (and
/// so scripts/test.sh) builds it before running any test.
fn asyncmcp_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_bench")).with_file_name("asyncmcp");
    assert!(
        path.is_file(),
        "no asyncmcp binary at {}: build it first with `cargo build -p asyncmcp-cli` \
         (scripts/test.sh builds the whole workspace)",
        path.display()
    );
    path
}

/// Every stack of the scenario answers every call, and the report compares
/// `asyncmcp serve` with both of the others.
#[tokio::test]
async fn bench_measures_serve_against_library_and_process_per_request() {
    let ls = aws::localstack().await;
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("bench-serve"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("results.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "serve", "--calls", "8", "--in-flight", "1,4"])
        .args(["--per-request-calls", "2", "--per-request-in-flight", "1"])
        .arg("--json")
        .arg(&json)
        .arg("--asyncmcp")
        .arg(asyncmcp_binary())
        .arg("--node")
        .arg(real_clients::node())
        .arg("--server-everything")
        .arg(real_clients::server_everything())
        .envs(ls.aws_env())
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
    assert!(
        stdout.contains("| asyncmcp serve (server-everything) | 4 | 8 | 0 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| process per request (server-everything) | 1 | 2 | 0 |"),
        "{stdout}"
    );
    assert!(stdout.contains("serve / library calls/s"), "{stdout}");
    // The transports' tables are not printed for this scenario.
    assert!(!stdout.contains("Targets (asyncmcp SQS)"), "{stdout}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("results written")).expect("JSON");
    let stacks: Vec<&str> = rows.iter().filter_map(|r| r["stack"].as_str()).collect();
    assert_eq!(
        stacks,
        ["sqs", "sqs", "serve", "serve", "per-request"],
        "{rows:#?}"
    );
    for row in &rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["calls_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        // The wrapped server runs in node processes: their CPU is counted.
        if row["stack"] != "sqs" {
            assert!(
                row["server_cpu_s_per_1k"].as_f64().unwrap_or(0.0) > 0.0,
                "{row}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

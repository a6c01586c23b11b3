//! The bench's `--scenario batch` runs end to end on LocalStack: the
//! ordinary rmcp client, the library's `Batch` and the `asyncmcp batch`
//! command against two server replicas, a few calls each.

use std::path::PathBuf;

use asyncmcp_testkit::aws;

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

/// Every client of the scenario answers every call in every repeat, the
/// API calls of both sides are counted, and the report compares both
/// batches with the ordinary client.
#[tokio::test]
async fn bench_measures_batches_against_the_rmcp_client() {
    let ls = aws::localstack().await;
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("bench-batch"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("results.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "batch", "--calls", "12", "--in-flight", "4"])
        .args(["--repeats", "2"])
        .arg("--json")
        .arg(&json)
        .arg("--asyncmcp")
        .arg(asyncmcp_binary())
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
    for label in [
        "| rmcp client over asyncmcp SQS | 4 | 12 | 0 |",
        "| asyncmcp Batch (library) | 4 | 12 | 0 |",
        "| asyncmcp batch (command) | 4 | 12 | 0 |",
    ] {
        assert!(stdout.contains(label), "{label}\n{stdout}");
    }
    assert!(stdout.contains("Batch / rmcp client calls/s"), "{stdout}");
    // The transports' tables are not printed for this scenario.
    assert!(!stdout.contains("Targets (asyncmcp SQS)"), "{stdout}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("results written")).expect("JSON");
    let stacks: Vec<&str> = rows.iter().filter_map(|r| r["stack"].as_str()).collect();
    assert_eq!(stacks, ["sqs", "batch-lib", "batch-cli"], "{rows:#?}");
    for row in &rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["calls"], 12, "{row}");
        assert!(row["calls_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        // Every call is at least one request sent and one answer received
        // between them: with fewer counted, a side went uncounted.
        for side in ["client_api_calls_per_call", "server_api_calls_per_call"] {
            assert!(row[side].as_f64().unwrap_or(0.0) > 0.0, "{side}: {row}");
        }
        let runs = row["runs_calls_per_s"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{row}");
        // The row is the run with the median (the lower of two).
        assert_eq!(runs[0], row["calls_per_s"], "{row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

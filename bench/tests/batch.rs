//! The bench's `--scenario batch` runs end to end on LocalStack: the
//! ordinary rmcp client, the library's `Batch` and the `asyncmcp batch`
//! command against two server replicas, a few calls each.

mod common;

use asyncmcp_testkit::aws;
use common::{asyncmcp_binary, run_bench};

/// Every client of the scenario answers every call, the
/// API calls of both sides are counted, and the report compares both
/// batches with the ordinary client.
#[tokio::test]
async fn bench_measures_batches_against_the_rmcp_client() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench-batch",
        &["--scenario", "batch", "--calls", "12", "--in-flight", "4"],
        |command, _| {
            command
                .args(["--repeats", "1"])
                .arg("--asyncmcp")
                .arg(asyncmcp_binary());
        },
    )
    .await;
    let stdout = &run.stdout;
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

    let rows = &run.rows;
    let stacks: Vec<&str> = rows.iter().filter_map(|r| r["stack"].as_str()).collect();
    assert_eq!(stacks, ["sqs", "batch-lib", "batch-cli"], "{rows:#?}");
    for row in rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["calls"], 12, "{row}");
        assert!(row["calls_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        // Every call is at least one request sent and one answer received
        // between them: with fewer counted, a side went uncounted.
        for side in ["client_api_calls_per_call", "server_api_calls_per_call"] {
            assert!(row[side].as_f64().unwrap_or(0.0) > 0.0, "{side}: {row}");
        }
        // One run each: the repeats' median is checked by the attributes
        // test, and each run here waits out its clients' long polls.
        let runs = row["runs_calls_per_s"].as_array().expect("runs");
        assert_eq!(runs.as_slice(), [row["calls_per_s"].clone()], "{row}");
    }
}

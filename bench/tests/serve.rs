//! The bench's `--scenario serve` runs end to end on LocalStack: the
//! library's server, the `asyncmcp serve` binary wrapping server-everything,
//! and the process-per-request baseline, a few calls each.

mod common;

use asyncmcp_testkit::{aws, real_clients};
use common::{asyncmcp_binary, run_bench};

/// Every stack of the scenario answers every call, and the report compares
/// `asyncmcp serve` with both of the others.
#[tokio::test]
async fn bench_measures_serve_against_library_and_process_per_request() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench-serve",
        &["--scenario", "serve", "--calls", "8", "--in-flight", "1,4"],
        |command, _| {
            command
                .args(["--per-request-calls", "2", "--per-request-in-flight", "1"])
                .arg("--asyncmcp")
                .arg(asyncmcp_binary())
                .arg("--node")
                .arg(real_clients::node())
                .arg("--server-everything")
                .arg(real_clients::server_everything());
        },
    )
    .await;
    let stdout = &run.stdout;
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

    let rows = &run.rows;
    let stacks: Vec<&str> = rows.iter().filter_map(|r| r["stack"].as_str()).collect();
    assert_eq!(
        stacks,
        ["sqs", "sqs", "serve", "serve", "per-request"],
        "{rows:#?}"
    );
    for row in rows {
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
}

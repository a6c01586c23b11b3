//! The bench's `--scenario scaleout` runs end to end on LocalStack: our
//! SQS server as 1, 2 and 3 processes on one request queue, one client.

mod common;

use asyncmcp_testkit::aws;
use common::run_bench;

/// Every level answers every call; each row has the CPU of each of its
/// server processes and the API calls of all of them; the report has a row
/// per number of processes with the broker's share.
#[tokio::test]
async fn bench_scales_our_server_out_over_processes() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench-scaleout",
        &[
            "--scenario",
            "scaleout",
            "--calls",
            "12",
            "--in-flight",
            "6",
        ],
        // Any process will do to check the broker's column: this test's.
        |command, _| {
            command
                .arg("--broker-pid")
                .arg(std::process::id().to_string());
        },
    )
    .await;
    let stdout = &run.stdout;
    for processes in 1..=3 {
        let row = format!("| {processes} | 6 | 12 | 0 |");
        assert!(stdout.contains(&row), "{row}\n{stdout}");
    }
    assert!(stdout.contains("cores busy"), "{stdout}");
    // The transports' tables are not printed for this scenario.
    assert!(!stdout.contains("Targets (asyncmcp SQS)"), "{stdout}");

    let rows = &run.rows;
    let processes: Vec<u64> = rows
        .iter()
        .filter_map(|r| r["server_processes"].as_u64())
        .collect();
    assert_eq!(processes, [1, 2, 3], "{rows:#?}");
    for row in rows {
        assert_eq!(row["stack"], "scaleout", "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["calls"], 12, "{row}");
        let each = row["server_cpu_s_per_1k_each"].as_array().expect("each");
        assert_eq!(
            each.len() as u64,
            row["server_processes"].as_u64().unwrap_or(0),
            "{row}"
        );
        for side in ["client_api_calls_per_call", "server_api_calls_per_call"] {
            assert!(row[side].as_f64().unwrap_or(0.0) > 0.0, "{side}: {row}");
        }
        // Every server process long-polls the one queue: more processes,
        // at least as many receives.
        assert!(
            row["operations"]["server ReceiveMessage"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0,
            "{row}"
        );
        assert!(row["broker_cpu_s_per_1k"].as_f64().is_some(), "{row}");
    }
}

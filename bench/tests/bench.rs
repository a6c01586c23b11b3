//! The bench runs end to end on LocalStack: `cargo test -p asyncmcp-bench`
//! (cargo builds the `bench` binary first, so the run tests the current code).

mod common;

use asyncmcp_testkit::aws;
use common::run_bench;

/// The bench measures every kind of stack end to end (a few calls each) and
/// writes its results and plot: process roles, the line protocol, API call
/// counting on both sides (SDK interceptor and boto3 hooks) and `/proc`
/// readings all work.
#[tokio::test]
async fn bench_measures_every_stack() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench",
        &["--stacks", "raw,sqs,sns-sqs,python-poll0"],
        |command, dir| {
            command
                .args(["--calls", "12", "--python-calls", "6", "--in-flight", "1,3"])
                .arg("--plot")
                .arg(dir.join("plot.svg"))
                .env("BENCH_PYTHON", asyncmcp_testkit::py_peer::py_peer_python());
        },
    )
    .await;
    let stdout = &run.stdout;
    assert!(stdout.contains("| asyncmcp SQS | 3 | 12 | 0 |"), "{stdout}");
    assert!(stdout.contains("calls/s at 20 in flight"), "{stdout}");

    let rows = &run.rows;
    assert_eq!(rows.len(), 8, "4 stacks x 2 levels: {rows:#?}");
    for row in rows {
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
    let plot = std::fs::read_to_string(run.dir().join("plot.svg")).expect("plot written");
    assert!(
        plot.starts_with("<svg") && plot.contains("asyncmcp SNS+SQS"),
        "{plot:.200}"
    );
}

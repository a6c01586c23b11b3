//! The bench runs end to end on LocalStack: `cargo test -p asyncmcp-bench`
//! (cargo builds the `bench` binary first, so the run tests the current code).

use asyncmcp_testkit::aws;

/// The bench measures every kind of stack end to end (a few calls each) and
/// writes its results and plot: process roles, the line protocol, API call
/// counting on both sides (SDK interceptor and boto3 hooks) and `/proc`
/// readings all work.
#[tokio::test]
async fn bench_measures_every_stack() {
    let ls = aws::localstack().await;
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("bench"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (json, svg) = (dir.join("results.json"), dir.join("plot.svg"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
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

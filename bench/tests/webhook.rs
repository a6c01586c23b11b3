//! The bench's `--scenario webhook` runs end to end: the raw HTTP floor, our
//! webhook transport unsigned and signed, our SQS transport on LocalStack
//! and Python asyncmcp 0.2.1's webhook transport, a few calls each.

mod common;

use asyncmcp_testkit::{aws, py_peer};
use common::run_bench;

/// Every stack of the scenario answers every call it was asked to make,
/// each echo checked, and the report compares the webhook transport with
/// all the others.
#[tokio::test]
async fn bench_measures_webhooks_against_floor_sqs_and_python() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench-webhook",
        &["--scenario", "webhook", "--in-flight", "1,4"],
        |command, _| {
            command
                .args(["--calls", "12", "--python-calls", "6", "--http-calls", "20"])
                .arg("--python")
                .arg(py_peer::py_peer_python());
        },
    )
    .await;
    let stdout = &run.stdout;
    for line in [
        "| raw HTTP round trip (floor) | 4 | 20 | 0 |",
        "| asyncmcp webhook | 4 | 20 | 0 |",
        "| asyncmcp webhook (signed) | 4 | 20 | 0 |",
        "| asyncmcp SQS (LocalStack) | 4 | 12 | 0 |",
        "| Python asyncmcp webhook | 4 | 6 | 0 |",
        "webhook / floor calls/s",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    // The transports' tables are not printed for this scenario.
    assert!(!stdout.contains("Targets (asyncmcp SQS)"), "{stdout}");

    let rows = &run.rows;
    let stacks: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["stack"].as_str().unwrap_or_default(),
                r["in_flight"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(&str, u64)> = [
        "raw-http",
        "webhook",
        "webhook-signed",
        "sqs",
        "python-webhook",
    ]
    .into_iter()
    .flat_map(|stack| [(stack, 1), (stack, 4)])
    .collect();
    assert_eq!(stacks, expected, "{rows:#?}");
    for row in rows {
        let figure = |name: &str| row[name].as_f64().unwrap_or(-1.0);
        let asked = match row["stack"].as_str() {
            Some("python-webhook") => 6,
            Some("sqs") => 12,
            _ => 20,
        };
        assert_eq!(
            (row["calls"].as_u64(), row["errors"].as_u64()),
            (Some(asked), Some(0)),
            "every call made and answered: {row}"
        );
        assert!(
            figure("calls_per_s") > 0.0 && figure("p99_ms") >= figure("p50_ms"),
            "{row}"
        );
        assert!(
            figure("server_peak_rss_mib") > 1.0 && figure("client_peak_rss_mib") > 1.0,
            "{row}"
        );
        // Only the SQS stack talks to AWS.
        let api = figure("api_calls_per_call");
        if row["stack"] == "sqs" {
            assert!(api > 0.5, "{row}");
        } else {
            assert_eq!(api, 0.0, "{row}");
        }
    }
}

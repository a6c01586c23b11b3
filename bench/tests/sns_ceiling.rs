//! The raw SNS+SQS round trip (`raw-sns`), the ceiling of asyncmcp over
//! SNS+SQS, runs end to end on LocalStack beside `sns-sqs`, and the report
//! gives the ratio of the two.

mod common;

use asyncmcp_testkit::aws;
use common::run_bench;

/// Both stacks answer every call; the raw one publishes through SNS on both
/// sides (counted), and the ratio line has a figure at each level.
#[tokio::test]
async fn bench_measures_the_raw_sns_sqs_ceiling() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench-sns",
        &[
            "--stacks",
            "raw-sns,sns-sqs",
            "--calls",
            "12",
            "--in-flight",
            "1,3",
        ],
        |_, _| {},
    )
    .await;
    let stdout = &run.stdout;
    for row in [
        "| raw SNS+SQS (ceiling) | 1 | 12 | 0 |",
        "| raw SNS+SQS (ceiling) | 3 | 12 | 0 |",
        "| asyncmcp SNS+SQS | 3 | 12 | 0 |",
    ] {
        assert!(stdout.contains(row), "{row}\n{stdout}");
    }
    assert!(
        stdout.contains("| asyncmcp SNS+SQS / raw SNS+SQS calls/s |"),
        "{stdout}"
    );
    // The ratio column (the fifth) has a number at both levels; the raw SQS
    // round trip was not measured, so the columns against it have none.
    for level in ["1", "3"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {level} | - | - | - | ")))
            .unwrap_or_else(|| panic!("no ratio line at {level}:\n{stdout}"));
        let ratio = line.split('|').nth(5).unwrap_or_default().trim();
        assert!(ratio.parse::<f64>().is_ok_and(|r| r > 0.0), "{line}");
    }

    let rows = &run.rows;
    assert_eq!(rows.len(), 4, "2 stacks x 2 levels: {rows:#?}");
    for row in rows.iter().filter(|r| r["stack"] == "raw-sns") {
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["calls"], 12, "{row}");
        // Requests and replies both go through a topic: each side publishes.
        for side in ["client PublishBatch", "server PublishBatch"] {
            let per_call = row["operations"][side].as_f64().unwrap_or(0.0);
            assert!(per_call > 0.0, "{side}: {row}");
        }
        assert!(
            row["operations"]["client SendMessageBatch"].is_null(),
            "{row}"
        );
    }
}

//! The bench's `--scenario attributes` runs end to end on LocalStack: the
//! raw SQS round trip once per message attribute set.

mod common;

use asyncmcp_testkit::aws;
use common::run_bench;

/// Every set answers every call in every repeat (the sets take turns). The
/// raw roles fail a call whose request or reply arrived without all of its
/// set's attributes, so no errors means the broker carried each set both
/// ways.
#[tokio::test]
async fn bench_measures_each_attribute_set() {
    let ls = aws::localstack().await;
    let run = run_bench(
        ls,
        "bench-attributes",
        &["--scenario", "attributes", "--in-flight", "4"],
        |command, _| {
            command.args(["--calls", "12", "--repeats", "2"]);
        },
    )
    .await;
    let stdout = &run.stdout;
    for row in [
        "| none | 0 / 0 |",
        "| + MessageType, Timestamp | 2 / 2 |",
        "| + Method, RequestId | 4 / 3 |",
        "| + ClientId, ReplyTo | 6 / 4 |",
        "| + SessionId | 7 / 5 |",
        "| + Sequence (full detail: all asyncmcp sent before) | 7 / 6 |",
        "| + Signature (signing on) | 8 / 7 |",
        "| lean detail (what asyncmcp sends its own peers) | 3 / 2 |",
    ] {
        assert!(stdout.contains(row), "{row}\n{stdout}");
    }
    assert!(stdout.contains("calls/s / none"), "{stdout}");

    let rows = &run.rows;
    let sets: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["attributes"].as_str())
        .collect();
    assert_eq!(
        sets,
        [
            "none",
            "type-time",
            "ids",
            "routing",
            "session",
            "sequence",
            "signed",
            "lean"
        ],
        "{rows:#?}"
    );
    for row in rows {
        assert_eq!(row["stack"], "raw-attributes", "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["calls"], 12, "{row}");
        assert!(row["calls_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        let runs = row["runs_calls_per_s"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{row}");
        // The row is the run with the median: the lower of two.
        assert_eq!(runs[0], row["calls_per_s"], "{row}");
        assert!(runs[0].as_f64() <= runs[1].as_f64(), "{row}");
    }
}

//! The raw SNS+SQS round trip (`raw-sns`), the ceiling of asyncmcp over
//! SNS+SQS, runs end to end on LocalStack beside `sns-sqs`, and the report
//! gives the ratio of the two.

use asyncmcp_testkit::aws;

/// Both stacks answer every call; the raw one publishes through SNS on both
/// sides (counted), and the ratio line has a figure at each level.
#[tokio::test]
async fn bench_measures_the_raw_sns_sqs_ceiling() {
    let ls = aws::localstack().await;
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("bench-sns"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("results.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--stacks",
            "raw-sns,sns-sqs",
            "--calls",
            "12",
            "--in-flight",
            "1,3",
        ])
        .arg("--json")
        .arg(&json)
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

    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("results written")).expect("JSON");
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
    let _ = std::fs::remove_dir_all(&dir);
}

//! The bench's `--scenario attributes` runs end to end on LocalStack: the
//! raw SQS round trip once per message attribute set.

use asyncmcp_testkit::aws;

/// Every set answers every call in every repeat (the sets take turns). The
/// raw roles fail a call whose request or reply arrived without all of its
/// set's attributes, so no errors means the broker carried each set both
/// ways.
#[tokio::test]
async fn bench_measures_each_attribute_set() {
    let ls = aws::localstack().await;
    let dir = std::env::temp_dir().join(asyncmcp_testkit::unique_name("bench-attributes"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("results.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "attributes", "--in-flight", "4"])
        .args(["--calls", "12", "--repeats", "2"])
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
        "| none | 0 / 0 |",
        "| + MessageType, Timestamp | 2 / 2 |",
        "| + Method, RequestId | 4 / 3 |",
        "| + ClientId, ReplyTo | 6 / 4 |",
        "| + SessionId | 7 / 5 |",
        "| + Sequence (all asyncmcp SQS sends) | 7 / 6 |",
        "| + Signature (signing on) | 8 / 7 |",
    ] {
        assert!(stdout.contains(row), "{row}\n{stdout}");
    }
    assert!(stdout.contains("calls/s / none"), "{stdout}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("results written")).expect("JSON");
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
            "signed"
        ],
        "{rows:#?}"
    );
    for row in &rows {
        assert_eq!(row["stack"], "raw-attributes", "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["calls"], 12, "{row}");
        assert!(row["calls_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        let runs = row["runs_calls_per_s"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! Tool limits through the `asyncmcp` command on LocalStack SQS: `asyncmcp
//! serve --tool-limit hold=1` runs one call of an unchanged Python SDK 2.x
//! server's `hold` tool at a time (the other waits in the queue, and both
//! are answered), and bad limit flags fail at once, saying why.
//!
//! Needs LocalStack and the Python MCP SDK 2.x: `scripts/test.sh` starts and
//! installs them (see `asyncmcp_testkit::real_clients`).

mod common;

use std::path::PathBuf;

use asyncmcp_testkit::{aws, real_clients};
use common::marks::MarkDir;
use common::serve::{Serve, run_to_end};

#[tokio::test]
async fn a_tool_limit_of_one_runs_one_call_at_a_time() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-limits").await;
    let marks = MarkDir::new("asyncmcp-limit-marks");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers/limit_server.py");
    let python = real_clients::mcp2_python().display().to_string();
    let script = script.display().to_string();
    let marks_path = marks.path().display().to_string();
    let serve = Serve::start_with(
        ls,
        &[
            "--queue-url",
            &queue,
            "--tool-limit",
            "hold=1",
            "--max-limit-wait",
            "2m",
            "--",
            &python,
            &script,
            &marks_path,
        ],
        &[("ASYNCMCP_LOG", "asyncmcp=info")],
    )
    .await;
    assert!(
        serve.stderr().contains("tool limits on"),
        "the ready line says limits are on:\n{}",
        serve.stderr()
    );
    let call = |tag: &'static str| {
        let queue = queue.clone();
        async move {
            let arguments = format!(r#"{{"ms": 3000, "tag": "{tag}"}}"#);
            run_to_end(
                ls,
                &["call", "--queue-url", &queue, "hold", &arguments],
                &[],
            )
            .await
        }
    };
    let (a, b) = tokio::join!(call("a"), call("b"));
    assert_eq!(a.text(), "held 3000 ms", "{a:#?}");
    assert_eq!(b.text(), "held 3000 ms", "{b:#?}");
    let (a_start, a_end) = (marks.read("start-a"), marks.read("end-a"));
    let (b_start, b_end) = (marks.read("start-b"), marks.read("end-b"));
    assert!(
        a_end <= b_start || b_end <= a_start,
        "the two calls overlapped: a {a_start}..{a_end}, b {b_start}..{b_end}"
    );
    assert!(
        serve
            .stderr()
            .contains("tool call over a limit; put back in the queue"),
        "the second call waited in the queue:\n{}",
        serve.stderr()
    );
}

#[tokio::test]
async fn bad_limit_flags_fail_saying_why() {
    let ls = aws::localstack().await;
    for (flags, says) in [
        (&["--tool-limit", "hold"][..], "is not NAME=VALUE"),
        (&["--tool-limit", "hold=0"][..], "must be at least 1"),
        (&["--tool-limit", "=2"][..], "names no tool"),
        (&["--tool-rate", "hold=0"][..], "must be above 0"),
        (
            &["--tool-rate", "hold=fast"][..],
            "is not a number of calls a second",
        ),
        (&["--tool-rate", "hold=1/0"][..], "must be at least 1"),
        (
            &["--default-tool-limit", "many"][..],
            "is not a whole number",
        ),
        (&["--caller-limit", "0"][..], "must be at least 1"),
        (&["--max-limit-wait", "soon"][..], "--max-limit-wait"),
    ] {
        let mut args = vec![
            "serve",
            "--queue-url",
            "http://localhost:4566/000000000000/nowhere",
        ];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        let run = run_to_end(ls, &args, &[]).await;
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {run:#?}");
        assert!(
            run.stderr.contains(says),
            "{flags:?} says {says:?}: {run:#?}"
        );
    }
}

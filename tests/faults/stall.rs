//! `stall`: the broker accepts connections and never answers, for longer
//! than the visibility timeout, under load.

use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsQueueOptions};
use asyncmcp_testkit::aws::{self, proxy::FaultProxy};
use asyncmcp_testkit::unique_name;

use crate::process::{self, Effects};

/// Stall the line between the server process and LocalStack (connections
/// accepted, nothing answered: sends, receives and extensions all hang)
/// for 7 s, on a 3 s visibility timeout, while 60 calls are in flight, 10
/// at a time: every call gets its own answer once the line comes back, each
/// effect happens once, and the server's heartbeat kept trying throughout
/// (it reports each extension left unanswered and tries again, instead of
/// waiting behind a stalled send).
pub(crate) async fn stall() {
    const CALLS: usize = 60;
    const IN_FLIGHT: usize = 10;
    const VISIBILITY: Duration = Duration::from_secs(3);
    const STALL: Duration = Duration::from_secs(7);
    let ls = aws::localstack().await;
    // Set up, torn down and called directly, not through the proxy: only
    // the server is cut off.
    let direct = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions::default().with_visibility_timeout(VISIBILITY);
    let requests = sqs::create_queue(&direct, &unique_name("stall"), &options)
        .await
        .expect("queue");
    let proxy = FaultProxy::in_front_of(&ls.endpoint)
        .await
        .expect("start the fault proxy");
    let aws_env: Vec<_> = ls
        .aws_env()
        .into_iter()
        .map(|(name, value)| match name {
            "AWS_ENDPOINT_URL" => (name, proxy.endpoint()),
            _ => (name, value),
        })
        .collect();
    let effects = Effects::new("stall");
    let (mut server, log) = process::spawn_logged_server(&aws_env, &requests, &effects).await;
    let session = process::connect(&direct, &requests).await;

    let load = process::start_load(session.peer().clone(), CALLS, IN_FLIGHT, 300);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.stall();
    let stalled_at = tokio::time::Instant::now();
    tokio::time::sleep(STALL).await;
    proxy.restore();
    let restored_at = tokio::time::Instant::now();
    let load = tokio::time::timeout(Duration::from_secs(90), load)
        .await
        .expect("the load ended within 90 s of the stall")
        .expect("load");

    let _ = server.start_kill();
    let _ = server.wait().await;
    let _ = session.cancel().await;
    let _ = sqs::delete_queue(&direct, &requests).await;

    let lines = log.lines();
    // Lines are stamped when this process reads them: allow a little for
    // the pipe after the restore.
    let during_stall = |at: &tokio::time::Instant| {
        *at >= stalled_at && *at <= restored_at + Duration::from_secs(1)
    };
    let unanswered_extensions = lines
        .iter()
        .filter(|(at, line)| line.contains("visibility extension not answered") && during_stall(at))
        .count();
    let counts = effects.counts();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "stall: {CALLS} calls, a {} s stall on a {} s visibility timeout, {} answered, {} lost, {duplicated} calls run twice, {unanswered_extensions} unanswered extensions retried during the stall",
        STALL.as_secs(),
        VISIBILITY.as_secs(),
        load.answered,
        load.lost.len(),
    );
    let server_log = || {
        lines
            .iter()
            .map(|(at, line)| {
                let since = at.saturating_duration_since(stalled_at).as_secs_f32();
                format!("{since:+7.2}s {line}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        load.lost.is_empty(),
        "calls without their answer: {:?}\nserver log (times since the stall):\n{}",
        load.lost,
        server_log()
    );
    assert_eq!(load.answered, CALLS, "every call got its own answer");
    assert_eq!(counts.len(), CALLS, "every call's effect happened");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(duplicated, 0, "calls run more than once: {twice:?}");
    assert!(
        unanswered_extensions > 0,
        "the heartbeat did not keep trying during the stall; server log (times since the stall):\n{}",
        server_log()
    );
}

//! `outage`: the broker is unreachable for a while under load.

use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsQueueOptions};

use crate::common::{self, proxy::FaultProxy};
use crate::process::{self, Effects};

/// Cut the line between both processes and LocalStack for 8 s while 150
/// calls are in flight, 15 at a time: server and client back off and
/// recover, every call gets its answer and its effect, and the server
/// reports the failed receives meanwhile. Effects that happened twice (a
/// request redelivered because its answer or its ack could not go out) are
/// counted and reported.
pub async fn outage() {
    const CALLS: usize = 150;
    const IN_FLIGHT: usize = 15;
    const CUT: Duration = Duration::from_secs(8);
    let ls = common::localstack().await;
    // Set up and torn down directly, not through the proxy.
    let direct = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions {
        visibility_timeout: Some(Duration::from_secs(5)),
        ..SqsQueueOptions::default()
    };
    let requests = sqs::create_queue(&direct, &common::unique_name("outage"), &options)
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
    let effects = Effects::new("outage");
    let (mut server, log) = process::spawn_logged_server(&aws_env, &requests, &effects).await;
    let client = sqs::client(&common::sdk_config_for(&proxy.endpoint()).await);
    let session = process::connect(&client, &requests).await;

    let load = process::start_load(session.peer().clone(), CALLS, IN_FLIGHT, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let cut_at = tokio::time::Instant::now();
    tokio::time::sleep(CUT).await;
    proxy.restore();
    let restored_at = tokio::time::Instant::now();
    let load = load.await.expect("load");

    let _ = server.start_kill();
    let _ = server.wait().await;
    let _ = session.cancel().await;
    let _ = sqs::delete_queue(&direct, &requests).await;

    let lines = log.lines();
    let receive_errors: Vec<_> = lines
        .iter()
        .filter(|(_, line)| line.contains("WARN") && line.contains("receive failed"))
        .collect();
    // Lines are stamped when this process reads them: allow a little for
    // the pipe after the restore.
    let during_cut = receive_errors
        .iter()
        .filter(|(at, _)| *at >= cut_at && *at <= restored_at + Duration::from_secs(1))
        .count();
    let counts = effects.counts();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "outage: {CALLS} calls, {} s cut, {} lost, {duplicated} duplicated effects, {} receive errors reported",
        CUT.as_secs(),
        load.lost.len(),
        receive_errors.len()
    );
    let server_log = || {
        lines
            .iter()
            .map(|(at, line)| format!("{:+7.2}s {line}", since(cut_at, *at)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let lost = || {
        load.lost
            .iter()
            .map(|(id, got)| {
                let ended = load.ended.get(id).map_or(f32::NAN, |at| since(cut_at, *at));
                let effects = counts.get(id).copied().unwrap_or(0);
                format!("{id}: ended at {ended:+.2}s, effect {effects}x, got {got}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(load.calls, CALLS);
    assert!(
        load.lost.is_empty(),
        "calls without their answer (times since the cut, restored at {:+.2}s):\n{}\nserver log:\n{}",
        since(cut_at, restored_at),
        lost(),
        server_log()
    );
    assert_eq!(counts.len(), CALLS, "every call's effect happened");
    assert!(
        during_cut > 0,
        "no failed receive reported during the cut; server log (times since the cut):\n{}",
        server_log()
    );
}

/// Seconds from `origin` to `at`, negative when `at` is earlier.
fn since(origin: tokio::time::Instant, at: tokio::time::Instant) -> f32 {
    at.duration_since(origin).as_secs_f32() - origin.duration_since(at).as_secs_f32()
}

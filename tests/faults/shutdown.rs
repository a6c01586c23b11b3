//! `shutdown`: the server is stopped with SIGTERM under load and another
//! replica takes over.

use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsQueueOptions};
use asyncmcp_testkit::{aws, unique_name};

use crate::process::{self, Effects};

/// SIGTERM the server while 100 calls are in flight, 10 at a time, with a
/// second replica already serving: the first stops receiving, finishes its
/// calls within the grace period and exits 0; every call gets its answer and
/// every effect happens once.
pub(crate) async fn shutdown() {
    const CALLS: usize = 100;
    let ls = aws::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    let requests = sqs::create_queue(
        &client,
        &unique_name("shutdown"),
        &SqsQueueOptions::default(),
    )
    .await
    .expect("queue");
    let effects = Effects::new("shutdown");
    let mut first = process::spawn_server(&ls.aws_env(), &requests, &effects).await;

    let session = process::connect(&client, &requests).await;
    let load = process::start_load(session.peer().clone(), CALLS, 10, 300);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut second = process::spawn_server(&ls.aws_env(), &requests, &effects).await;
    let pid = first.id().expect("pid");
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(signalled.success());
    let signalled_at = tokio::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(60), first.wait())
        .await
        .expect("the first server stopped within 60 s")
        .expect("wait");
    let stopped_in = signalled_at.elapsed();
    let load = load.await.expect("load");
    let _ = second.start_kill();
    session.cancel().await.expect("close");
    let _ = sqs::delete_queue(&client, &requests).await;

    let counts = effects.counts();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "shutdown: {CALLS} calls, SIGTERM mid-load, first server exited with {status} after {:.1} s, {} lost, {duplicated} duplicated effects",
        stopped_in.as_secs_f64(),
        load.lost.len()
    );
    assert!(status.success(), "graceful exit: {status}");
    assert!(
        load.lost.is_empty(),
        "calls without their answer: {:?}",
        load.lost
    );
    assert_eq!(counts.len(), CALLS, "every effect happened");
    assert_eq!(duplicated, 0, "no effect happened twice");
}

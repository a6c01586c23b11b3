//! `crash`: the server process is killed with SIGKILL under load.

use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsQueueOptions};
use asyncmcp_testkit::{aws, unique_name};

use crate::process::{self, Effects};

/// Kill -9 the server three times while 200 calls are in flight, 20 at a
/// time, restarting it each time: each kill lands with calls in flight,
/// every call gets its answer (late ack and visibility), none is lost. Effects that happened twice (the process died
/// after the effect, before the answer went out) are counted and reported.
pub(crate) async fn crash() {
    const CALLS: usize = 200;
    const IN_FLIGHT: usize = 20;
    const KILLS: usize = 3;
    let ls = aws::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    // Short, so that requests a killed server held come back soon.
    let options = SqsQueueOptions::default().with_visibility_timeout(Duration::from_secs(3));
    let requests = sqs::create_queue(&client, &unique_name("crash"), &options)
        .await
        .expect("queue");
    let effects = Effects::new("crash");
    let mut server = process::spawn_server(&ls.aws_env(), &requests, &effects).await;

    let session = process::connect(&client, &requests).await;
    let load = process::start_load(session.peer().clone(), CALLS, IN_FLIGHT, 200);
    let mut kills = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.start_kill().expect("kill -9");
        kills.push(tokio::time::Instant::now());
        let _ = server.wait().await;
        server = process::spawn_server(&ls.aws_env(), &requests, &effects).await;
    }
    let load = load.await.expect("load");
    let _ = server.start_kill();
    session.cancel().await.expect("close");
    let _ = sqs::delete_queue(&client, &requests).await;

    let counts = effects.counts();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    // Calls made and not yet answered when each kill landed: a kill with
    // none in flight would show nothing about crashes under load.
    let in_flight: Vec<usize> = kills.iter().map(|at| load.in_flight_at(*at)).collect();
    eprintln!(
        "crash: {CALLS} calls, {KILLS} kills with {in_flight:?} calls in flight, {} answered, {} lost, {duplicated} duplicated effects",
        load.answered,
        load.lost.len()
    );
    assert!(
        in_flight.iter().all(|n| *n > 0),
        "a kill landed with no call in flight: {in_flight:?}"
    );
    assert_eq!(load.answered, CALLS, "every call got its own answer");
    assert!(
        load.lost.is_empty(),
        "calls without their answer: {:?}",
        load.lost
    );
    assert_eq!(counts.len(), CALLS, "every call's effect happened");
}

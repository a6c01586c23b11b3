//! `outage`: the broker is unreachable for a while under load.

use std::time::Duration;

use asyncmcp::QueueClientTransport;
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp_testkit::aws::{self, proxy::FaultProxy};
use asyncmcp_testkit::unique_name;

use crate::process::{self, Effects};
use crate::sends::{self, RecordingOutbox};

/// Cut the line between both processes and LocalStack for 8 s while 150
/// calls are in flight, 15 at a time, and make 5 more calls 1 s into the
/// cut: server and client back off and recover, every call gets its answer,
/// each effect happens once (the final responses the server could not send
/// are replayed to the requests' redeliveries), the server reports the
/// failed receives and replies meanwhile, and each call made during the cut
/// had its request's send fail and then retried until it went out.
pub(crate) async fn outage() {
    const CALLS: usize = 150;
    const IN_FLIGHT: usize = 15;
    const DURING_CUT: usize = 5;
    const CUT: Duration = Duration::from_secs(8);
    let ls = aws::localstack().await;
    // Set up and torn down directly, not through the proxy.
    let direct = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions::default().with_visibility_timeout(Duration::from_secs(5));
    let requests = sqs::create_queue(&direct, &unique_name("outage"), &options)
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
    // The client's reply queue is made directly; its calls go through the
    // proxy, and its sends through an outbox that records each attempt.
    let replies = sqs::create_queue(&direct, &unique_name("outage-replies"), &options)
        .await
        .expect("queue");
    let client = sqs::client(&aws::sdk_config_for(&proxy.endpoint()).await);
    let outbox = RecordingOutbox::new(SqsOutbox::new(client.clone()));
    let transport = QueueClientTransport::builder(&requests)
        .wait(Duration::from_secs(1))
        .build(
            SqsInbox::open(client.clone(), &replies)
                .await
                .expect("open"),
            outbox.clone(),
        );
    let session = rmcp::ServiceExt::serve((), transport)
        .await
        .expect("initialize");

    let load = process::start_load(session.peer().clone(), CALLS, IN_FLIGHT, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let cut_at = tokio::time::Instant::now();
    // Calls whose requests are sent while the line is down, so that their
    // sends must fail and be retried.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during_cut: Vec<_> = (0..DURING_CUT)
        .map(|i| {
            let peer = session.peer().clone();
            tokio::spawn(async move {
                let id = format!("cut-{i}");
                let text = process::call_work(&peer, &id, 200).await;
                (id, text)
            })
        })
        .collect();
    tokio::time::sleep(CUT - Duration::from_secs(1)).await;
    proxy.restore();
    let restored_at = tokio::time::Instant::now();
    let load = load.await.expect("load");
    let mut lost_during_cut = Vec::new();
    for call in futures::future::join_all(during_cut).await {
        let (id, text) = call.expect("call during the cut");
        if id != text {
            lost_during_cut.push((id, text));
        }
    }

    let _ = server.start_kill();
    let _ = server.wait().await;
    let _ = session.cancel().await;
    let _ = sqs::delete_queue(&direct, &requests).await;
    let _ = sqs::delete_queue(&direct, &replies).await;

    let lines = log.lines();
    let receive_errors: Vec<_> = lines
        .iter()
        .filter(|(_, line)| line.contains("WARN") && line.contains("receive failed"))
        .collect();
    // Lines are stamped when this process reads them: allow a little for
    // the pipe after the restore.
    let in_cut =
        |at: &tokio::time::Instant| *at >= cut_at && *at <= restored_at + Duration::from_secs(1);
    let receive_errors_in_cut = receive_errors.iter().filter(|(at, _)| in_cut(at)).count();
    // Each is a final response (`work` sends no notifications) the server
    // could not send: the replay cache keeps it for the redelivery.
    let replies_not_sent = lines
        .iter()
        .filter(|(at, line)| line.contains("reply not sent") && in_cut(at))
        .count();
    let counts = effects.counts();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    // For each call made during the cut, its request's send attempts: the
    // first failed, a later one went out.
    let attempts = outbox.attempts();
    let retried: Vec<(String, usize)> = (0..DURING_CUT)
        .map(|i| {
            let of = sends::attempts_of(&attempts, &format!("\"cut-{i}\""));
            let failed = of.iter().take_while(|a| a.error.is_some()).count();
            let then_sent = of.get(failed).is_some_and(|a| a.error.is_none());
            (format!("cut-{i}"), if then_sent { failed } else { 0 })
        })
        .collect();
    let failed_sends = attempts.iter().filter(|a| a.error.is_some()).count();
    eprintln!(
        "outage: {CALLS} calls and {DURING_CUT} more during a {} s cut, {} answered, {} lost, {duplicated} duplicated effects, {} receive errors and {replies_not_sent} unsent replies reported during the cut, {failed_sends} failed client sends, calls made during the cut sent after {:?} failed attempts",
        CUT.as_secs(),
        load.answered + DURING_CUT - lost_during_cut.len(),
        load.lost.len() + lost_during_cut.len(),
        receive_errors_in_cut,
        retried.iter().map(|(_, n)| *n).collect::<Vec<_>>()
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
    assert!(
        load.lost.is_empty(),
        "calls without their answer (times since the cut, restored at {:+.2}s):\n{}\nserver log:\n{}",
        since(cut_at, restored_at),
        lost(),
        server_log()
    );
    assert!(
        lost_during_cut.is_empty(),
        "calls made during the cut without their answer: {lost_during_cut:?}"
    );
    assert_eq!(load.answered, CALLS, "every call got its own answer");
    assert_eq!(
        counts.len(),
        CALLS + DURING_CUT,
        "every call's effect happened"
    );
    assert!(
        receive_errors_in_cut > 0,
        "no failed receive reported during the cut; server log (times since the cut):\n{}",
        server_log()
    );
    assert!(
        replies_not_sent > 0,
        "no reply failed to go out during the cut, so nothing was left to replay; server log (times since the cut):\n{}",
        server_log()
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        duplicated, 0,
        "effects that happened more than once (a redelivery ran the tool again instead of replaying the kept response): {twice:?}"
    );
    assert!(
        retried.iter().all(|(_, failed)| *failed > 0),
        "each call made during the cut had its send fail and then retried (failed attempts before the one that went out, 0 when none failed or none went out): {retried:?}"
    );
}

/// Seconds from `origin` to `at`, negative when `at` is earlier.
fn since(origin: tokio::time::Instant, at: tokio::time::Instant) -> f32 {
    at.duration_since(origin).as_secs_f32() - origin.duration_since(at).as_secs_f32()
}

//! `--scenario scaleout`: our SQS server as 1, 2, 3 processes on one
//! request queue, one client, in one run.
//!
//! A deployment scales a server by running more replicas on its request
//! queue; the question is how far that goes and what stops it. The bench
//! starts one server process (the library's server with the demo tools, as
//! `ours.rs` runs it) and the client, runs the levels, then adds a process
//! and runs them again, up to the largest of `--server-processes`. The
//! processes share the key sealing session ids, as a deployment's replicas
//! do. Each row reports calls/s, the API calls of all processes per call,
//! the CPU per 1000 calls of each server process and of the client, and the
//! broker's (with `--broker-pid`); the report adds how many cores each of
//! them kept busy, which says what bounds the figure on a small machine.

use anyhow::Context;

use crate::process::{Measured, Usage};
use crate::protocol::{Command, RunResult, Stats};
use crate::report::Row;
use crate::{Args, Stack, broker_cpu, commands, ours, report, setup};

/// Measures the levels at each number of server processes.
pub async fn measure(args: &Args, admin: &setup::Admin) -> anyhow::Result<Vec<Row>> {
    let mut counts = args.server_processes.clone();
    counts.sort_unstable();
    counts.dedup();
    anyhow::ensure!(
        !counts.is_empty() && counts[0] > 0,
        "--server-processes must be at least 1"
    );
    let endpoints = admin.queues("scaleout").await.context(
        "creating queues for the scale-out; is LocalStack running (localstack/start.sh)?",
    )?;
    let measured = measure_on(args, &endpoints, &counts).await;
    admin.remove(endpoints).await?;
    measured
}

async fn measure_on(
    args: &Args,
    endpoints: &setup::Endpoints,
    counts: &[usize],
) -> anyhow::Result<Vec<Row>> {
    let mut commands = commands(args, Stack::Sqs, endpoints)?;
    let key: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|id| *id.as_bytes())
        .collect();
    commands
        .server
        .1
        .extend(["--session-key".into(), ours::to_hex(&key)]);
    let start_server = |n: usize| {
        let (program, server_args) = commands.server.clone();
        async move { Measured::start(&format!("server {n}"), &program, &server_args).await }
    };
    let mut servers = vec![start_server(1).await?];
    let mut client = Measured::start("client", &commands.client.0, &commands.client.1).await?;
    let mut rows = Vec::new();
    let measured: anyhow::Result<()> = async {
        for &count in counts {
            while servers.len() < count {
                servers.push(start_server(servers.len() + 1).await?);
            }
            for &in_flight in &args.in_flight {
                let mut runs = Vec::new();
                for _ in 0..args.repeats.unwrap_or(1) {
                    runs.push(level(args, (&mut servers, &mut client), in_flight).await?);
                }
                rows.push(report::median(runs));
            }
        }
        Ok(())
    }
    .await;
    let stops = servers.into_iter().map(Measured::stop);
    let (client, servers) = tokio::join!(client.stop(), futures::future::join_all(stops));
    measured?;
    client?;
    for server in servers {
        server?;
    }
    Ok(rows)
}

/// One run of one level against every server process running.
async fn level(
    args: &Args,
    (servers, client): (&mut [Measured], &mut Measured),
    in_flight: usize,
) -> anyhow::Result<Row> {
    let calls = args.calls.unwrap_or(1000);
    let broker_before = broker_cpu(args.broker_pid)?;
    let server_before = usages(servers)?;
    let client_before = client.usage()?;
    let stats_before = stats(servers).await?;
    let client_stats = client.stats().await?;
    let result: RunResult = client.ask(&Command::Run { calls, in_flight }).await?;
    let stats_after = stats(servers).await?;
    let server_after = usages(servers)?;
    let client_after = client.usage()?;
    let broker = broker_before.zip(broker_cpu(args.broker_pid)?);
    let client_calls = (
        client_stats,
        Stats {
            api_calls: result.api_calls,
            operations: result.operations.clone(),
        },
    );
    let mut row = Row::new(
        Stack::Scaleout,
        in_flight,
        &result,
        ((sum(&stats_before), sum(&stats_after)), client_calls),
        (total(&server_before), total(&server_after)),
        (client_before, client_after),
    );
    let per_1k = |before: f64, after: f64| (after - before) * 1000.0 / row.calls.max(1) as f64;
    row.server_processes = Some(servers.len());
    row.server_cpu_s_per_1k_each = server_before
        .iter()
        .zip(&server_after)
        .map(|(before, after)| per_1k(before.cpu_s, after.cpu_s))
        .collect();
    row.broker_cpu_s_per_1k = broker.map(|(before, after)| per_1k(before, after));
    eprintln!(
        "bench:   {} server processes, {in_flight:>4} in flight: {:.1} calls/s",
        servers.len(),
        row.calls_per_s
    );
    Ok(row)
}

/// Each server's API calls so far.
async fn stats(servers: &mut [Measured]) -> anyhow::Result<Vec<Stats>> {
    let mut all = Vec::with_capacity(servers.len());
    for server in servers {
        all.push(server.stats().await?);
    }
    Ok(all)
}

/// The API calls of several processes as one.
fn sum(stats: &[Stats]) -> Stats {
    let mut sum = Stats::default();
    for one in stats {
        sum.api_calls += one.api_calls;
        for (operation, count) in &one.operations {
            *sum.operations.entry(operation.clone()).or_default() += count;
        }
    }
    sum
}

fn usages(servers: &[Measured]) -> anyhow::Result<Vec<Usage>> {
    servers.iter().map(Measured::usage).collect()
}

/// The CPU time of several processes together, and the largest peak RSS.
fn total(usages: &[Usage]) -> Usage {
    usages.iter().fold(Usage::default(), |sum, one| Usage {
        cpu_s: sum.cpu_s + one.cpu_s,
        peak_rss_mib: sum.peak_rss_mib.max(one.peak_rss_mib),
    })
}

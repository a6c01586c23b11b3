//! Measures tool calls through asyncmcp: latency, throughput and AWS API
//! calls per tool call, at several in-flight levels, in one run.
//!
//! ```text
//! localstack/start.sh && export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --release --example bench -- --calls 1000 --in-flight 1,50
//! cargo run --release --example bench -- --broker memory
//! ```
//!
//! Each level runs `--calls` `tools/call echo` requests from one client,
//! keeping `--in-flight` of them outstanding, against a server in the same
//! process on fresh queues. API calls are counted by an SDK interceptor on
//! the one SQS client both sides share (idle long polls included). Results
//! on a shared machine are noisy: compare figures from one run.

#[path = "shared/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "shared/demo_tools.rs"]
mod demo_tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::sqs::{self, ApiCallCounter, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::queue::{Inbox, Outbox};
use asyncmcp::{MemoryBroker, QueueClientConfig, QueueClientTransport, QueueServer};
use clap::{Parser, ValueEnum};
use demo_tools::{DemoServer, DemoStats};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use tokio_util::sync::CancellationToken;

/// Benchmark asyncmcp tool calls.
#[derive(Parser)]
struct Args {
    /// Tool calls per in-flight level.
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// In-flight levels, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50,200")]
    in_flight: Vec<usize>,
    /// The broker: SQS (AWS or LocalStack via AWS_ENDPOINT_URL) or in-process.
    #[arg(long, value_enum, default_value_t = Broker::Sqs)]
    broker: Broker,
    /// Concurrent long polls of the client's reply queue.
    #[arg(long, default_value_t = QueueClientConfig::new("").pollers)]
    client_pollers: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Broker {
    Sqs,
    Memory,
}

/// The queues of one run.
struct Queues {
    requests: Arc<dyn Inbox>,
    replies: Arc<dyn Inbox>,
    outbox: Arc<dyn Outbox>,
    /// SQS queues to delete at the end.
    cleanup: Vec<String>,
}

/// One level's figures.
struct Level {
    in_flight: usize,
    calls: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    api_calls: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("warn,rmcp=error");
    let args = Args::parse();
    anyhow::ensure!(args.calls > 0, "--calls must be at least 1");

    let counter = ApiCallCounter::new();
    let memory = MemoryBroker::new();
    let sqs_client = match args.broker {
        Broker::Sqs => Some(sqs::client_with_counter(
            &sqs::sdk_config_from_env().await,
            &counter,
        )),
        Broker::Memory => None,
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let Queues {
        requests: request_inbox,
        replies: reply_inbox,
        outbox,
        cleanup,
    } = match &sqs_client {
        Some(client) => {
            let options = SqsQueueOptions::default();
            let requests =
                sqs::create_queue(client, &format!("bench-requests-{run_id}"), &options).await?;
            let replies =
                sqs::create_queue(client, &format!("bench-replies-{run_id}"), &options).await?;
            Queues {
                requests: Arc::new(SqsInbox::open(client.clone(), &requests).await?),
                replies: Arc::new(SqsInbox::open(client.clone(), &replies).await?),
                outbox: Arc::new(SqsOutbox::new(client.clone())),
                cleanup: vec![requests, replies],
            }
        }
        None => {
            let requests = memory.create_queue("requests", MemoryQueueOptions::default());
            let replies = memory.create_queue("replies", MemoryQueueOptions::default());
            Queues {
                requests: Arc::new(memory.inbox(&requests)?),
                replies: Arc::new(memory.inbox(&replies)?),
                outbox: Arc::new(memory.outbox()),
                cleanup: Vec::new(),
            }
        }
    };
    let requests = request_inbox.info().address.clone();

    let max_level = args.in_flight.iter().copied().max().unwrap_or(1);
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(request_inbox, outbox.clone())
        .max_in_flight(max_level.max(64))
        .build(DemoServer::factory(Arc::new(DemoStats::default())))
        .spawn(shutdown.clone());
    let transport =
        QueueClientTransport::new(reply_inbox, outbox, QueueClientConfig::new(&requests));
    let client = ().serve(transport).await?;

    // Warm up connections and code paths.
    run_level(&client, 20, 10).await?;

    let mut levels = Vec::new();
    for &in_flight in &args.in_flight {
        let before = counter.total();
        let (elapsed, mut latencies) = run_level(&client, args.calls, in_flight).await?;
        let api_calls = sqs_client.as_ref().map(|_| counter.total() - before);
        latencies.sort();
        levels.push(Level {
            in_flight,
            calls: args.calls,
            per_second: args.calls as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            api_calls,
        });
    }
    client.cancel().await?;
    shutdown.cancel();
    server.await?;
    if let Some(client) = &sqs_client {
        for url in cleanup {
            sqs::delete_queue(client, &url).await?;
        }
    }

    let broker = match args.broker {
        Broker::Sqs => std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS SQS".into()),
        Broker::Memory => "in-memory broker".into(),
    };
    println!("asyncmcp tools/call echo over {broker}\n");
    println!("| in flight | calls | calls/s | p50 ms | p99 ms | API calls per tool call |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for level in &levels {
        let api = level
            .api_calls
            .map(|n| format!("{:.2}", n as f64 / level.calls as f64))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            level.in_flight,
            level.calls,
            level.per_second,
            level.p50.as_secs_f64() * 1e3,
            level.p99.as_secs_f64() * 1e3,
            api
        );
    }
    Ok(())
}

/// Runs `calls` echo calls keeping `in_flight` outstanding; returns the
/// wall time and each call's latency.
async fn run_level(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    calls: usize,
    in_flight: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..in_flight.max(1)).map(|_| {
        let client = client.peer().clone();
        let next = next.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < calls {
                let arguments = serde_json::json!({"text": "ping"});
                let request = CallToolRequestParams::new("echo")
                    .with_arguments(arguments.as_object().cloned().unwrap_or_default());
                let t0 = Instant::now();
                client.call_tool(request).await?;
                latencies.push(t0.elapsed());
            }
            anyhow::Ok(latencies)
        })
    });
    let mut latencies = Vec::with_capacity(calls);
    for worker in futures::future::join_all(workers).await {
        latencies.extend(worker??);
    }
    Ok((started.elapsed(), latencies))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

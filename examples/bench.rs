//! Measures tool calls through asyncmcp: latency, throughput and AWS API
//! calls per tool call, at several in-flight levels, in one run.
//!
//! ```text
//! localstack/start.sh && export AWS_ENDPOINT_URL=http://localhost:4566
//! cargo run --release --example bench -- --calls 1000 --in-flight 1,50
//! cargo run --release --features sns --example bench -- --broker sqs,sns-sqs
//! cargo run --release --example bench -- --broker memory
//! ```
//!
//! Each level runs `--calls` `tools/call echo` requests from one client,
//! keeping `--in-flight` of them outstanding, against a server in the same
//! process on fresh queues (and, for `sns-sqs`, fresh request and reply
//! topics with the queues subscribed with raw delivery). API calls are
//! counted by an SDK interceptor on the SQS and SNS clients both sides share
//! (idle long polls included). Results on a shared machine are noisy: compare
//! figures from one run.

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
    /// The brokers, comma separated, each measured in turn: SQS (AWS or
    /// LocalStack via AWS_ENDPOINT_URL), SNS+SQS (feature `sns`) or
    /// in-process.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqs")]
    broker: Vec<Broker>,
    /// Concurrent long polls of the client's reply queue.
    #[arg(long, default_value_t = QueueClientConfig::new("").pollers)]
    client_pollers: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Broker {
    Sqs,
    #[cfg(feature = "sns")]
    SnsSqs,
    Memory,
}

impl Broker {
    fn label(self) -> &'static str {
        match self {
            Broker::Sqs => "SQS",
            #[cfg(feature = "sns")]
            Broker::SnsSqs => "SNS+SQS",
            Broker::Memory => "memory",
        }
    }
}

/// The queues (and topics) of one broker's run.
struct Route {
    requests: Arc<dyn Inbox>,
    replies: Arc<dyn Inbox>,
    outbox: Arc<dyn Outbox>,
    /// Where the client sends requests (the request queue or topic).
    server_address: String,
    /// Where the server sends replies (the reply queue or topic).
    reply_address: String,
    /// Removes what the run created.
    cleanup: Option<futures::future::BoxFuture<'static, anyhow::Result<()>>>,
}

/// One level's figures.
struct Level {
    broker: Broker,
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
    let sdk = if args.broker.iter().any(|b| *b != Broker::Memory) {
        Some(sqs::sdk_config_from_env().await)
    } else {
        None
    };
    let mut levels = Vec::new();
    for &broker in &args.broker {
        let route = match (broker, &sdk) {
            (Broker::Memory, _) | (_, None) => memory_route(),
            (Broker::Sqs, Some(sdk)) => sqs_route(sqs::client_with_counter(sdk, &counter)).await?,
            #[cfg(feature = "sns")]
            (Broker::SnsSqs, Some(sdk)) => sns_sqs_route(sdk, &counter).await?,
        };
        let counted = broker != Broker::Memory;
        levels.extend(run_broker(&args, broker, route, counted.then_some(&counter)).await?);
    }

    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into());
    println!("asyncmcp tools/call echo; AWS endpoint: {endpoint}\n");
    println!(
        "| transport | in flight | calls | calls/s | p50 ms | p99 ms | API calls per tool call |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for level in &levels {
        let api = level
            .api_calls
            .map(|n| format!("{:.2}", n as f64 / level.calls as f64))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            level.broker.label(),
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

/// Serves the demo tools on `route`, connects one client, and measures each
/// in-flight level.
async fn run_broker(
    args: &Args,
    broker: Broker,
    mut route: Route,
    counter: Option<&ApiCallCounter>,
) -> anyhow::Result<Vec<Level>> {
    let max_level = args.in_flight.iter().copied().max().unwrap_or(1);
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(route.requests.clone(), route.outbox.clone())
        .max_in_flight(max_level.max(64))
        .build(DemoServer::factory(Arc::new(DemoStats::default())))
        .spawn(shutdown.clone());
    let config = QueueClientConfig {
        reply_address: Some(route.reply_address.clone()),
        pollers: args.client_pollers,
        ..QueueClientConfig::new(&route.server_address)
    };
    let transport = QueueClientTransport::new(route.replies.clone(), route.outbox.clone(), config);
    let client = ().serve(transport).await?;

    // Warm up connections and code paths.
    run_level(&client, 20, 10).await?;

    let mut levels = Vec::new();
    for &in_flight in &args.in_flight {
        let before = counter.map(ApiCallCounter::total);
        let (elapsed, mut latencies) = run_level(&client, args.calls, in_flight).await?;
        let api_calls = counter.zip(before).map(|(c, before)| c.total() - before);
        latencies.sort();
        levels.push(Level {
            broker,
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
    if let Some(cleanup) = route.cleanup.take() {
        cleanup.await?;
    }
    Ok(levels)
}

fn memory_route() -> Route {
    let memory = MemoryBroker::new();
    let requests = memory.create_queue("requests", MemoryQueueOptions::default());
    let replies = memory.create_queue("replies", MemoryQueueOptions::default());
    Route {
        requests: Arc::new(memory.inbox(&requests).expect("just created")),
        replies: Arc::new(memory.inbox(&replies).expect("just created")),
        outbox: Arc::new(memory.outbox()),
        server_address: requests,
        reply_address: replies,
        cleanup: None,
    }
}

fn run_name(what: &str) -> String {
    format!("bench-{what}-{}", uuid::Uuid::new_v4().simple())
}

async fn sqs_route(client: sqs::Client) -> anyhow::Result<Route> {
    let options = SqsQueueOptions::default();
    let requests = sqs::create_queue(&client, &run_name("requests"), &options).await?;
    let replies = sqs::create_queue(&client, &run_name("replies"), &options).await?;
    let cleanup_client = client.clone();
    let queues = [requests.clone(), replies.clone()];
    Ok(Route {
        requests: Arc::new(SqsInbox::open(client.clone(), &requests).await?),
        replies: Arc::new(SqsInbox::open(client.clone(), &replies).await?),
        outbox: Arc::new(SqsOutbox::new(client)),
        server_address: requests,
        reply_address: replies,
        cleanup: Some(Box::pin(async move {
            for url in queues {
                sqs::delete_queue(&cleanup_client, &url).await?;
            }
            Ok(())
        })),
    })
}

/// Request and reply topics, each with a queue subscribed (raw delivery).
#[cfg(feature = "sns")]
async fn sns_sqs_route(
    sdk: &aws_config::SdkConfig,
    counter: &ApiCallCounter,
) -> anyhow::Result<Route> {
    use asyncmcp::queue::RoutingOutbox;
    use asyncmcp::queue::sns::{self, SnsOutbox, SubscriptionOptions};

    let sqs_client = sqs::client_with_counter(sdk, counter);
    let sns_client = sns::client_with_counter(sdk, counter);
    let raw = SubscriptionOptions {
        raw_message_delivery: true,
        ..SubscriptionOptions::default()
    };
    let mut made = Vec::new();
    for what in ["requests", "replies"] {
        let name = run_name(what);
        let queue = sqs::create_queue(&sqs_client, &name, &SqsQueueOptions::default()).await?;
        let topic = sns::create_topic(&sns_client, &name, &Default::default()).await?;
        sns::subscribe_queue(&sns_client, &sqs_client, &topic, &queue, &raw).await?;
        made.push((topic, queue));
    }
    let outbox = RoutingOutbox::new()
        .with(Arc::new(SnsOutbox::new(sns_client.clone())))
        .with(Arc::new(SqsOutbox::new(sqs_client.clone())));
    let (request_topic, request_queue) = made[0].clone();
    let (reply_topic, reply_queue) = made[1].clone();
    Ok(Route {
        requests: Arc::new(SqsInbox::open(sqs_client.clone(), &request_queue).await?),
        replies: Arc::new(SqsInbox::open(sqs_client.clone(), &reply_queue).await?),
        outbox: Arc::new(outbox),
        server_address: request_topic,
        reply_address: reply_topic,
        cleanup: Some(Box::pin(async move {
            // Deleting a topic removes its subscriptions.
            for (topic, queue) in made {
                sns::delete_topic(&sns_client, &topic).await?;
                sqs::delete_queue(&sqs_client, &queue).await?;
            }
            Ok(())
        })),
    })
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

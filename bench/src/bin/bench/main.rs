//! The asyncmcp benchmark: tool calls through our transport, against the raw
//! SQS ceiling and Python asyncmcp 0.2.1, measured in one run.
//!
//! ```text
//! scripts/bench.sh                       # LocalStack + Python peer set up, then this
//! cargo run --release -p asyncmcp-bench --bin bench -- --calls 1000 --in-flight 1,20,50
//! ```
//!
//! For each stack (`--stacks`), the bench creates fresh queues (and
//! topics), starts the stack's server and client as two processes, and runs
//! every in-flight level: `--calls` `tools/call echo` requests from one
//! client keeping that many outstanding. Per level it reports calls/s, p50
//! and p99 latency, AWS API calls per tool call (both processes, idle long
//! polls included), CPU seconds per 1000 calls of each process and their
//! peak RSS, then the ratios of ours to the raw ceiling and to Python.
//!
//! The stacks:
//! * `raw`: the ideal SQS request/reply round trip, no MCP (see `raw.rs`);
//! * `raw-sns`: the same round trip through SNS topics with subscribed
//!   queues (raw delivery), publishing through the library's batched SNS
//!   outbox: the ceiling of `sns-sqs` (`raw.rs`);
//! * `sqs`, `sns-sqs`: asyncmcp over SQS, and over SNS topics with
//!   subscribed queues (raw delivery);
//! * `python`, `python-poll0`: Python asyncmcp 0.2.1 over SQS with its
//!   default settings, and with `poll_interval_seconds=0` (`py_bench.py`,
//!   run by the interpreter in `--python`);
//! * `serve`: the `asyncmcp serve` binary (`--asyncmcp`) wrapping
//!   server-everything (`--node`, `--server-everything`), over SQS
//!   (`wrapped.rs`);
//! * `per-request`: the process-per-request baseline, a fresh
//!   server-everything per call (`per_request.rs`).
//!
//! * `raw-http`: the floor of a webhook round trip, two acknowledged POSTs
//!   with no MCP (see `raw_http.rs`);
//! * `webhook`, `webhook-signed`: asyncmcp over webhooks on loopback, with
//!   unsigned and signed deliveries (`webhook.rs`);
//! * `python-webhook`: Python asyncmcp 0.2.1's webhook client and server
//!   (`py_webhook_bench.py`).
//!
//! * `batch-lib`, `batch-cli`: many calls fired at once and answers
//!   collected as they come, through the library's `Batch` and through the
//!   `asyncmcp batch` command (`batch.rs`).
//!
//! * `scaleout`: asyncmcp over SQS with 1, 2, 3 server processes on one
//!   request queue (`scaleout.rs`);
//! * `raw-attributes`: the raw SQS round trip once per set of message
//!   attributes (`attributes.rs`).
//!
//! `--scenario scaleout` measures `scaleout` at 200 in flight and reports
//! calls/s, API calls and CPU per process and the broker's against the
//! number of server processes. `--scenario attributes` measures
//! `raw-attributes` at 50 in flight and reports what each attribute set
//! costs the broker.
//! `--scenario serve` measures `sqs` (the library's server with the demo
//! echo), `serve` and `per-request` and reports how `asyncmcp serve`
//! compares with both. `--scenario webhook` measures `raw-http`, `webhook`,
//! `webhook-signed`, `sqs` and `python-webhook` and reports ours against
//! the floor, SQS and Python. `--scenario batch` measures `sqs`,
//! `batch-lib` and `batch-cli` against two server replicas at 64 in flight
//! and reports both batches against the ordinary client (`sqs`).
//!
//! The measured processes talk to the bench over stdin/stdout
//! (`protocol.rs`); this same binary plays our roles (`serve`, `drive`).

mod attributes;
mod batch;
mod ours;
mod per_request;
mod process;
mod protocol;
mod raw;
mod raw_http;
mod report;
mod scaleout;
mod setup;
mod webhook;
mod wrapped;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use asyncmcp_testkit::{demo_tools, support};
use clap::{Parser, Subcommand, ValueEnum};

use attributes::AttributeSet;
use process::Measured;
use protocol::{Command, RunResult, Stats};
use report::Row;
use wrapped::{Server, Wrapped};

/// Benchmark asyncmcp against the raw SQS ceiling and Python asyncmcp.
#[derive(Parser)]
struct Args {
    /// What to compare: the transports (raw SQS, ours, Python), or
    /// `asyncmcp serve` against the library's server and a process per
    /// request. Sets the default --stacks and --in-flight.
    #[arg(long, value_enum, default_value = "transports")]
    scenario: Scenario,
    /// Tool calls per in-flight level (Rust stacks) [default: 1000; with
    /// `--scenario batch` 2000].
    #[arg(long)]
    calls: Option<usize>,
    /// Runs of each level; the run with the median calls/s is reported
    /// [default: 1; with `--scenario batch` 3].
    #[arg(long)]
    repeats: Option<usize>,
    /// Server replicas on the request queue (the library's server only)
    /// [default: 1; with `--scenario batch` 2].
    #[arg(long)]
    replicas: Option<usize>,
    /// Server processes of `--scenario scaleout`, one level each, comma
    /// separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    server_processes: Vec<usize>,
    /// Attribute sets of `--scenario attributes`, comma separated, in this
    /// order [default: every set, from none to signed].
    #[arg(long, value_enum, value_delimiter = ',')]
    attribute_sets: Vec<AttributeSet>,
    /// Tool calls per in-flight level for the Python stacks, which are
    /// several times slower.
    #[arg(long, default_value_t = 200)]
    python_calls: usize,
    /// Tool calls per in-flight level for our stacks over HTTP on loopback
    /// (`raw-http`, `webhook`, `webhook-signed`), tens of times faster than
    /// over a queue: enough for a level to last a second or more.
    #[arg(long, default_value_t = 5000)]
    http_calls: usize,
    /// Tool calls for the process-per-request baseline, which starts a
    /// server process per call.
    #[arg(long, default_value_t = 30)]
    per_request_calls: usize,
    /// In-flight levels, comma separated [default: 1,10,20,50,200; with
    /// `--scenario serve` or `webhook` 1,10,50; with `--scenario batch` 64;
    /// with `--scenario scaleout` 200; with `--scenario attributes` 50].
    /// 20 is where the comparison
    /// of the transports with Python is made.
    #[arg(long, value_delimiter = ',')]
    in_flight: Vec<usize>,
    /// In-flight levels of the process-per-request baseline. At 1, one
    /// process after another, as the wrapper it stands for runs.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    per_request_in_flight: Vec<usize>,
    /// The stacks to measure, comma separated, in this order [default:
    /// raw,sqs,raw-sns,sns-sqs,python,python-poll0; with `--scenario serve`
    /// sqs,serve,per-request; with `--scenario webhook`
    /// raw-http,webhook,webhook-signed,sqs,python-webhook; with `--scenario
    /// batch` sqs,batch-lib,batch-cli; with `--scenario scaleout` scaleout;
    /// with `--scenario attributes` raw-attributes].
    #[arg(long, value_enum, value_delimiter = ',')]
    stacks: Vec<Stack>,
    /// The `asyncmcp` binary for the `serve` and `batch-cli` stacks [default: `asyncmcp`
    /// beside this binary, which `cargo build --release -p asyncmcp-cli`
    /// puts there].
    #[arg(long, env = "BENCH_ASYNCMCP")]
    asyncmcp: Option<PathBuf>,
    /// Node, to run server-everything (scripts/bench.sh installs it).
    #[arg(long, env = "ASYNCMCP_NODE")]
    node: Option<PathBuf>,
    /// server-everything's entry point (scripts/bench.sh installs it).
    #[arg(long, env = "ASYNCMCP_SERVER_EVERYTHING")]
    server_everything: Option<PathBuf>,
    /// The Python interpreter with asyncmcp 0.2.1 installed (scripts/bench.sh
    /// makes one).
    #[arg(long, env = "BENCH_PYTHON", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/py-peer/bin/python"))]
    python: PathBuf,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also plot throughput and p99 against in-flight level here (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The broker's process (e.g. LocalStack's), whose CPU time per 1000
    /// calls is then reported too: on a small machine it shares the cores.
    #[arg(long, env = "BENCH_BROKER_PID")]
    broker_pid: Option<u32>,
    /// Measure nothing: report (and plot) the results a run saved with
    /// `--json`.
    #[arg(long, value_name = "JSON")]
    report_from: Option<PathBuf>,
    #[command(subcommand)]
    role: Option<Role>,
}

/// What a run compares.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Scenario {
    /// Our transport against the raw SQS ceiling and Python asyncmcp.
    Transports,
    /// `asyncmcp serve` against the library's server and a process per
    /// request.
    Serve,
    /// Our webhook transport against the raw HTTP floor, our SQS transport
    /// and Python asyncmcp's webhook transport.
    Webhook,
    /// The library's `Batch` and the `asyncmcp batch` command against the
    /// ordinary client, two server replicas.
    Batch,
    /// Our SQS server as 1, 2 and 3 processes on one request queue.
    Scaleout,
    /// The raw SQS round trip with message attribute sets added one at a
    /// time.
    Attributes,
}

impl Scenario {
    fn stacks(self) -> Vec<Stack> {
        match self {
            Scenario::Transports => vec![
                Stack::Raw,
                Stack::Sqs,
                Stack::RawSns,
                Stack::SnsSqs,
                Stack::Python,
                Stack::PythonPoll0,
            ],
            Scenario::Serve => vec![Stack::Sqs, Stack::Serve, Stack::PerRequest],
            Scenario::Webhook => vec![
                Stack::RawHttp,
                Stack::Webhook,
                Stack::WebhookSigned,
                Stack::Sqs,
                Stack::PythonWebhook,
            ],
            Scenario::Batch => vec![Stack::Sqs, Stack::BatchLib, Stack::BatchCli],
            Scenario::Scaleout => vec![Stack::Scaleout],
            Scenario::Attributes => vec![Stack::RawAttributes],
        }
    }

    fn in_flight(self) -> Vec<usize> {
        match self {
            Scenario::Transports => vec![1, 10, 20, 50, 200],
            Scenario::Serve | Scenario::Webhook => vec![1, 10, 50],
            Scenario::Batch => vec![64],
            Scenario::Scaleout => vec![200],
            Scenario::Attributes => vec![50],
        }
    }

    fn calls(self) -> usize {
        match self {
            Scenario::Batch => 2000,
            _ => 1000,
        }
    }

    fn repeats(self) -> usize {
        match self {
            Scenario::Batch => 3,
            _ => 1,
        }
    }

    fn replicas(self) -> usize {
        match self {
            Scenario::Batch => 2,
            _ => 1,
        }
    }
}

/// A measured stack.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    Raw,
    Sqs,
    SnsSqs,
    Python,
    PythonPoll0,
    Serve,
    PerRequest,
    RawHttp,
    Webhook,
    WebhookSigned,
    PythonWebhook,
    BatchLib,
    BatchCli,
    RawSns,
    Scaleout,
    RawAttributes,
}

impl Stack {
    /// The name in tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            Stack::Raw => "raw SQS (ceiling)",
            Stack::Sqs => "asyncmcp SQS",
            Stack::SnsSqs => "asyncmcp SNS+SQS",
            Stack::Python => "Python asyncmcp (defaults)",
            Stack::PythonPoll0 => "Python asyncmcp (poll 0)",
            Stack::Serve => "asyncmcp serve (server-everything)",
            Stack::PerRequest => "process per request (server-everything)",
            Stack::RawHttp => "raw HTTP round trip (floor)",
            Stack::Webhook => "asyncmcp webhook",
            Stack::WebhookSigned => "asyncmcp webhook (signed)",
            Stack::PythonWebhook => "Python asyncmcp webhook",
            Stack::BatchLib => "asyncmcp Batch (library)",
            Stack::BatchCli => "asyncmcp batch (command)",
            Stack::RawSns => "raw SNS+SQS (ceiling)",
            Stack::Scaleout => "asyncmcp SQS, server processes",
            Stack::RawAttributes => "raw SQS + attributes",
        }
    }

    fn is_python(self) -> bool {
        matches!(
            self,
            Stack::Python | Stack::PythonPoll0 | Stack::PythonWebhook
        )
    }

    /// Whether the stack runs over HTTP on loopback: no queues, no AWS API
    /// calls, and its server names its URL when ready.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Stack::RawHttp | Stack::Webhook | Stack::WebhookSigned | Stack::PythonWebhook
        )
    }

    /// Whether the stack's client is a batch (`batch.rs`).
    pub fn is_batch(self) -> bool {
        matches!(self, Stack::BatchLib | Stack::BatchCli)
    }

    /// Whether the stack has a report of its own (`--scenario scaleout`,
    /// `attributes`) rather than rows of the transports' table.
    pub fn is_scenario_only(self) -> bool {
        matches!(self, Stack::Scaleout | Stack::RawAttributes)
    }

    /// Whether the stack is a raw round trip in `raw.rs`.
    fn is_raw(self) -> bool {
        matches!(self, Stack::Raw | Stack::RawSns | Stack::RawAttributes)
    }

    /// Whether the stack's tools are server-everything's.
    pub fn wraps_server_everything(self) -> bool {
        matches!(self, Stack::Serve | Stack::PerRequest)
    }
}

/// The roles this binary plays as a measured process.
#[derive(Subcommand)]
enum Role {
    /// Serve requests (reads commands on stdin).
    #[command(hide = true)]
    Serve(RoleArgs),
    /// Make calls when told to (reads commands on stdin).
    #[command(hide = true)]
    Drive(RoleArgs),
    /// Serve requests with a fresh server process each (reads commands on
    /// stdin).
    #[command(hide = true)]
    PerRequest(per_request::PerRequestArgs),
    /// Serve requests over HTTP, replying at webhooks (reads commands on
    /// stdin).
    #[command(hide = true)]
    ServeWebhook(webhook::WebhookArgs),
    /// Make calls over HTTP when told to, replies arriving at a webhook
    /// (reads commands on stdin).
    #[command(hide = true)]
    DriveWebhook(webhook::WebhookArgs),
    /// Make calls as batches when told to (reads commands on stdin).
    #[command(hide = true)]
    DriveBatch(batch::BatchArgs),
}

/// What a measured process needs to know.
#[derive(clap::Args, Clone)]
pub struct RoleArgs {
    /// `raw` or `ours`.
    #[arg(long)]
    raw: bool,
    #[arg(long)]
    request_queue: String,
    #[arg(long)]
    request_address: String,
    #[arg(long)]
    reply_queue: String,
    #[arg(long)]
    reply_address: String,
    /// Concurrent long polls (default: the library's default).
    #[arg(long)]
    pollers: Option<usize>,
    /// The name of the echo tool's argument (clients).
    #[arg(long, default_value = "text")]
    echo_field: String,
    /// Calls made before the first level (clients).
    #[arg(long, default_value_t = 20)]
    warm_up: usize,
    /// Server replicas on the request queue, in the one process (servers).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// The message attributes requests and replies carry (raw roles).
    #[arg(long, value_enum)]
    attributes: Option<AttributeSet>,
    /// The key sealing session ids, as hex, shared by server processes on
    /// one queue (ours; default: a random one).
    #[arg(long)]
    session_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing("warn,rmcp=error");
    let args = Args::parse();
    match args.role {
        Some(Role::Serve(role)) if role.raw => raw::serve(role).await,
        Some(Role::Serve(role)) => ours::serve(role).await,
        Some(Role::Drive(role)) if role.raw => raw::drive(role).await,
        Some(Role::Drive(role)) => ours::drive(role).await,
        Some(Role::PerRequest(role)) => per_request::serve(role).await,
        Some(Role::ServeWebhook(role)) if role.raw => raw_http::serve(role).await,
        Some(Role::ServeWebhook(role)) => webhook::serve(role).await,
        Some(Role::DriveWebhook(role)) if role.raw => raw_http::drive(role).await,
        Some(Role::DriveWebhook(role)) => webhook::drive(role).await,
        Some(Role::DriveBatch(role)) => batch::drive(role).await,
        None => bench(args).await,
    }
}

async fn bench(mut args: Args) -> anyhow::Result<()> {
    if args.stacks.is_empty() {
        args.stacks = args.scenario.stacks();
    }
    if args.in_flight.is_empty() {
        args.in_flight = args.scenario.in_flight();
    }
    let calls = *args.calls.get_or_insert(args.scenario.calls());
    let repeats = *args.repeats.get_or_insert(args.scenario.repeats());
    let replicas = *args.replicas.get_or_insert(args.scenario.replicas());
    anyhow::ensure!(
        repeats > 0 && replicas > 0,
        "--repeats and --replicas must be at least 1"
    );
    anyhow::ensure!(
        calls > 0 && args.python_calls > 0 && args.per_request_calls > 0 && args.http_calls > 0,
        "--calls must be at least 1"
    );
    anyhow::ensure!(
        !args.in_flight.contains(&0) && !args.per_request_in_flight.contains(&0),
        "in-flight levels must be at least 1"
    );
    if args.report_from.is_none()
        && args.stacks.iter().any(|s| s.is_python())
        && !args.python.exists()
    {
        anyhow::bail!(
            "no Python interpreter at {}; scripts/bench.sh installs Python asyncmcp 0.2.1 \
             there, or pass --python (or BENCH_PYTHON) or leave out the python stacks",
            args.python.display()
        );
    }
    let rows = match &args.report_from {
        Some(path) => serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("reading results from {}", path.display()))?,
        None => measure_all(&args).await?,
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into());
    print!("{}", report::markdown(&endpoint, &rows));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)?;
    }
    if let Some(path) = &args.plot {
        report::plot(path, &rows)?;
    }
    Ok(())
}

/// Measures every stack in turn.
async fn measure_all(args: &Args) -> anyhow::Result<Vec<Row>> {
    let repeats = args.repeats.unwrap_or(1);
    let admin = setup::Admin::from_env().await;
    let mut rows = Vec::new();
    for &stack in &args.stacks {
        if stack == Stack::Scaleout {
            eprintln!("bench: {}", stack.label());
            rows.extend(scaleout::measure(args, &admin).await?);
            continue;
        }
        if stack == Stack::RawAttributes {
            rows.extend(measure_attributes(args, &admin).await?);
            continue;
        }
        if stack.is_http() {
            eprintln!("bench: {}", stack.label());
            rows.extend(measure(args, stack, None, repeats).await?);
            continue;
        }
        let run = format!("{stack:?}").to_lowercase();
        let endpoints = match stack {
            Stack::SnsSqs | Stack::RawSns => admin.topics(&run).await,
            _ => admin.queues(&run).await,
        }
        .with_context(|| {
            format!(
                "creating queues for {}; is LocalStack running (localstack/start.sh)?",
                stack.label()
            )
        })?;
        eprintln!("bench: {}", stack.label());
        let measured = measure(args, stack, Some((&endpoints, None)), repeats).await;
        admin.remove(endpoints).await?;
        rows.extend(measured?);
    }
    Ok(rows)
}

/// Measures the raw SQS round trip once per attribute set. With
/// `--repeats`, the sets take turns (every set once, then every set again)
/// so that the machine drifting during the run does not pass for the cost
/// of the sets measured last.
async fn measure_attributes(args: &Args, admin: &setup::Admin) -> anyhow::Result<Vec<Row>> {
    let stack = Stack::RawAttributes;
    let sets = match args.attribute_sets.as_slice() {
        [] => AttributeSet::ALL.as_slice(),
        sets => sets,
    };
    let mut runs: Vec<Vec<Row>> = sets.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.repeats.unwrap_or(1) {
        for (&set, runs) in sets.iter().zip(&mut runs) {
            let endpoints = admin.queues("attributes").await.context(
                "creating queues for the attributes; is LocalStack running (localstack/start.sh)?",
            )?;
            eprintln!("bench: {}: {}", stack.label(), set.label());
            let measured = measure(args, stack, Some((&endpoints, Some(set))), 1).await;
            admin.remove(endpoints).await?;
            runs.extend(measured?.into_iter().map(|mut row| {
                row.attributes = Some(set);
                row
            }));
        }
    }
    let mut rows = Vec::new();
    for runs in runs {
        for &level in &args.in_flight {
            let level_runs: Vec<Row> = runs
                .iter()
                .filter(|r| r.in_flight == level)
                .cloned()
                .collect();
            if !level_runs.is_empty() {
                rows.push(report::median(level_runs));
            }
        }
    }
    Ok(rows)
}

/// Starts `stack`'s server and client and runs every level `repeats`
/// times, reporting the median run of each. The stacks
/// over HTTP have no `endpoints`: their client is told the URL the server
/// named. A raw stack's messages carry the attribute set given with the
/// endpoints, if any.
async fn measure(
    args: &Args,
    stack: Stack,
    endpoints: Option<(&setup::Endpoints, Option<AttributeSet>)>,
    repeats: usize,
) -> anyhow::Result<Vec<Row>> {
    let mut commands = match endpoints {
        Some((endpoints, set)) => {
            let mut commands = commands(args, stack, endpoints)?;
            if let Some(set) = set {
                let set = set.to_possible_value().map(|v| v.get_name().to_owned());
                for side in [&mut commands.server.1, &mut commands.client.1] {
                    side.extend(["--attributes".to_owned()].into_iter().chain(set.clone()));
                }
            }
            commands
        }
        None => http_commands(args, stack)?,
    };
    let mut server = match stack {
        Stack::Serve => {
            Server::Wrapped(Wrapped::start(&commands.server.0, &commands.server.1).await?)
        }
        _ => Server::Measured(Box::new(
            Measured::start("server", &commands.server.0, &commands.server.1).await?,
        )),
    };
    if endpoints.is_none() {
        commands
            .client
            .1
            .extend(["--server-url".into(), server.url()?]);
    }
    let mut client = Measured::start("client", &commands.client.0, &commands.client.1).await?;
    let (calls, levels) = match stack {
        _ if stack.is_python() => (args.python_calls, &args.in_flight),
        Stack::PerRequest => (args.per_request_calls, &args.per_request_in_flight),
        _ if stack.is_http() => (args.http_calls, &args.in_flight),
        _ => (args.calls.unwrap_or(1000), &args.in_flight),
    };
    let mut rows = Vec::new();
    for &in_flight in levels {
        let mut runs = Vec::new();
        for _ in 0..repeats {
            runs.push(level(args, (&mut server, &mut client), stack, calls, in_flight).await?);
        }
        rows.push(report::median(runs));
    }
    // Both finish their last long poll before they exit: wait for the two
    // at once.
    let (client, server) = tokio::join!(client.stop(), server.stop());
    client?;
    server?;
    Ok(rows)
}

/// One run of one level.
async fn level(
    args: &Args,
    (server, client): (&mut Server, &mut Measured),
    stack: Stack,
    calls: usize,
    in_flight: usize,
) -> anyhow::Result<Row> {
    {
        let broker_before = broker_cpu(args.broker_pid)?;
        let (server_before, client_before) = (server.usage()?, client.usage()?);
        let (server_calls, client_calls) = (server.stats().await?, client.stats().await?);
        let result: RunResult = client.ask(&Command::Run { calls, in_flight }).await?;
        let server_calls = (server_calls, server.stats().await?);
        let client_calls = (
            client_calls,
            Stats {
                api_calls: result.api_calls,
                operations: result.operations.clone(),
            },
        );
        let (server_after, client_after) = (server.usage()?, client.usage()?);
        let broker = broker_before.zip(broker_cpu(args.broker_pid)?);
        let mut row = Row::new(
            stack,
            in_flight,
            &result,
            (server_calls, client_calls),
            (server_before, server_after),
            (client_before, client_after),
        );
        row.broker_cpu_s_per_1k =
            broker.map(|(before, after)| (after - before) * 1000.0 / row.calls.max(1) as f64);
        eprintln!(
            "bench:   {in_flight:>4} in flight: {:.1} calls/s",
            row.calls_per_s
        );
        Ok(row)
    }
}

/// CPU seconds the broker process has used, if one was named.
fn broker_cpu(pid: Option<u32>) -> anyhow::Result<Option<f64>> {
    pid.map(|pid| process::read_usage(pid).map(|u| u.cpu_s))
        .transpose()
        .context("reading the broker's CPU time (--broker-pid)")
}

/// The server's and the client's program and arguments for a stack.
struct Commands {
    server: (String, Vec<String>),
    client: (String, Vec<String>),
}

/// The program and the server's and client's arguments for `stack`.
fn commands(args: &Args, stack: Stack, e: &setup::Endpoints) -> anyhow::Result<Commands> {
    if stack.is_python() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/bench/py_bench.py");
        let mut server = vec![
            script.into(),
            "server".into(),
            "--request-queue-url".into(),
            e.request_queue.clone(),
        ];
        let mut client = vec![
            script.into(),
            "client".into(),
            "--server-queue-url".into(),
            e.request_queue.clone(),
            "--reply-queue-url".into(),
            e.reply_queue.clone(),
        ];
        if stack == Stack::PythonPoll0 {
            for side in [&mut server, &mut client] {
                side.extend(["--poll-interval".into(), "0".into()]);
            }
        }
        let python = args.python.display().to_string();
        return Ok(Commands {
            server: (python.clone(), server),
            client: (python, client),
        });
    }
    let program = std::env::current_exe()?.display().to_string();
    let mut common = vec![
        "--request-queue".into(),
        e.request_queue.clone(),
        "--request-address".into(),
        e.request_address.clone(),
        "--reply-queue".into(),
        e.reply_queue.clone(),
        "--reply-address".into(),
        e.reply_address.clone(),
    ];
    if stack.is_raw() {
        common.push("--raw".into());
    }
    let role = |name: &str| [vec![name.to_owned()], common.clone()].concat();
    let mut server = role("serve");
    server.extend(["--replicas".into(), args.replicas.unwrap_or(1).to_string()]);
    if stack.is_batch() {
        let mut client = role("drive-batch");
        if stack == Stack::BatchCli {
            client.extend(["--cli".into(), asyncmcp_binary(args)?.display().to_string()]);
        }
        return Ok(Commands {
            server: (program.clone(), server),
            client: (program, client),
        });
    }
    if !stack.wraps_server_everything() {
        return Ok(Commands {
            server: (program.clone(), server),
            client: (program, role("drive")),
        });
    }
    let (node, server_everything) = server_everything(args)?;
    // server-everything's echo takes `message`; a process per call is slow
    // enough that a short warm-up will do.
    let mut client = role("drive");
    client.extend(["--echo-field".into(), "message".into()]);
    if stack == Stack::PerRequest {
        client.extend(["--warm-up".into(), "2".into()]);
        let mut server = role("per-request");
        server.extend(["--program".into(), node, "--arg".into(), server_everything]);
        return Ok(Commands {
            server: (program.clone(), server),
            client: (program, client),
        });
    }
    let asyncmcp = asyncmcp_binary(args)?;
    // As many requests at once as the library's server in `ours.rs`, so that
    // the deepest level is not held back by the default of 64.
    let server = vec![
        "serve".into(),
        "--queue-url".into(),
        e.request_queue.clone(),
        "--max-in-flight".into(),
        ours::MAX_IN_FLIGHT.to_string(),
        "--".into(),
        node,
        server_everything,
    ];
    Ok(Commands {
        server: (asyncmcp.display().to_string(), server),
        client: (program, client),
    })
}

/// The `asyncmcp` binary: `--asyncmcp`, or the one beside this binary.
fn asyncmcp_binary(args: &Args) -> anyhow::Result<PathBuf> {
    let asyncmcp = match &args.asyncmcp {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("asyncmcp"),
    };
    anyhow::ensure!(
        asyncmcp.exists(),
        "no asyncmcp binary at {}; build it with `cargo build --release -p asyncmcp-cli` \
         (scripts/bench.sh does) or pass --asyncmcp",
        asyncmcp.display()
    );
    Ok(asyncmcp)
}

/// The server's and client's program and arguments for a stack over HTTP;
/// the client's `--server-url` comes once the server is up.
fn http_commands(args: &Args, stack: Stack) -> anyhow::Result<Commands> {
    if stack == Stack::PythonWebhook {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/bin/bench/py_webhook_bench.py"
        );
        let python = args.python.display().to_string();
        return Ok(Commands {
            server: (python.clone(), vec![script.into(), "server".into()]),
            client: (python, vec![script.into(), "client".into()]),
        });
    }
    let program = std::env::current_exe()?.display().to_string();
    let flags: Vec<String> = match stack {
        Stack::RawHttp => vec!["--raw".into()],
        Stack::WebhookSigned => vec!["--signed".into()],
        _ => Vec::new(),
    };
    let role = |name: &str| [vec![name.to_owned()], flags.clone()].concat();
    Ok(Commands {
        server: (program.clone(), role("serve-webhook")),
        client: (program, role("drive-webhook")),
    })
}

/// Node and server-everything's entry point, from the flags or
/// `ASYNCMCP_NODE` and `ASYNCMCP_SERVER_EVERYTHING`.
fn server_everything(args: &Args) -> anyhow::Result<(String, String)> {
    let found = |path: &Option<PathBuf>, flag: &str, var: &str| match path {
        Some(path) if path.exists() => Ok(path.display().to_string()),
        Some(path) => anyhow::bail!("{var}={} does not exist", path.display()),
        None => anyhow::bail!(
            "{var} is not set; scripts/bench.sh installs Node and server-everything and sets \
             it (ensure_real_clients in scripts/env.sh), or pass {flag}"
        ),
    };
    Ok((
        found(&args.node, "--node", "ASYNCMCP_NODE")?,
        found(
            &args.server_everything,
            "--server-everything",
            "ASYNCMCP_SERVER_EVERYTHING",
        )?,
    ))
}

/// Runs `calls` calls of `call`, keeping `in_flight` outstanding; a failed
/// call is counted, not fatal.
pub async fn run_level<F, Fut>(calls: usize, in_flight: usize, call: F) -> RunResult
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while next.fetch_add(1, Ordering::Relaxed) < calls {
                    let t0 = Instant::now();
                    match call().await {
                        Ok(()) => latencies.push(t0.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            errors += 1;
                            tracing::warn!(error = %e, "call failed");
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut result = RunResult::default();
    for worker in workers {
        match worker.await {
            Ok((latencies, errors)) => {
                result.latencies_ms.extend(latencies);
                result.errors += errors;
            }
            Err(e) => {
                tracing::error!(error = %e, "worker panicked");
                result.errors += 1;
            }
        }
    }
    result.elapsed_s = started.elapsed().as_secs_f64();
    result
}

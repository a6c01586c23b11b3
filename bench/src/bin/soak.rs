//! A long run against the in-memory broker that watches memory: RSS and live
//! heap should stay flat once warmed up, whatever the number of finished
//! calls, sessions or replay entries (the replay cache is bounded by its
//! window and memory budget).
//!
//! ```text
//! cargo run --release -p asyncmcp-bench --bin soak -- --calls 100000 --in-flight 50
//! cargo run --release -p asyncmcp-bench --bin soak -- --calls 100000 --sessions           # a new client every 1000 calls
//! cargo run --release -p asyncmcp-bench --bin soak -- --calls 100000 --replay-window 0    # replay cache off
//! cargo run --release -p asyncmcp-bench --bin soak -- --calls 20000 --replay-window 5 --linger 6   # expiry frees
//! ```
//!
//! One server (the demo tools) and one client share a [`MemoryBroker`] in
//! this process; the client makes `--calls` echo calls keeping `--in-flight`
//! outstanding. Every `--sample` calls, with no call outstanding, it prints a
//! Markdown table row: RSS (`VmRSS`), the live heap as a counting allocator
//! sees it (what RSS hides behind the allocator's caching), live tokio tasks,
//! and what the broker holds. The server's own tables are not public; the
//! heap column is their sum, and a run with `--replay-window 0` beside one
//! with the default separates the replay cache from the rest.
//!
//! At the end it says whether the last sample stayed within the stated bound
//! of the first (which follows the warm-up). It exits 0 either way; only
//! errors fail it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::{MemoryBroker, QueueClientTransport, QueueServer};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use clap::Parser;
use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use tokio_util::sync::CancellationToken;

/// The system allocator, counting live bytes and allocations: RSS alone
/// cannot tell a leak from memory the allocator keeps for reuse.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Soak asyncmcp on the in-memory broker and watch memory.
#[derive(Parser)]
struct Args {
    /// Echo calls in all.
    #[arg(long, default_value_t = 100_000)]
    calls: usize,
    /// Calls kept outstanding.
    #[arg(long, default_value_t = 50)]
    in_flight: usize,
    /// Calls between two table rows.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
    /// A new client (its own reply queue, `initialize`, session) every
    /// `--session-calls` calls, closed when its calls are done.
    #[arg(long)]
    sessions: bool,
    /// Calls per client with `--sessions`.
    #[arg(long, default_value_t = 1_000)]
    session_calls: usize,
    /// The server's replay window, in seconds (0 turns replay off).
    #[arg(long, default_value_t = 300)]
    replay_window: u64,
    /// The server's replay budget, in MiB.
    #[arg(long, default_value_t = 64)]
    replay_budget: usize,
    /// After the last call, wait this many seconds, make one more call (which
    /// expires what the replay window no longer covers) and sample again.
    #[arg(long, default_value_t = 0)]
    linger: u64,
    /// The last sample may exceed the first by this many percent ...
    #[arg(long, default_value_t = 10.0)]
    tolerance_pct: f64,
    /// ... or by this many MiB, whichever is larger.
    #[arg(long, default_value_t = 4.0)]
    tolerance_mib: f64,
}

/// One table row.
struct Sample {
    calls: usize,
    rss_mib: f64,
    heap_mib: f64,
}

type Client = RunningService<RoleClient, ()>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rmcp=error".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.calls > 0 && args.sample > 0,
        "--calls and --sample must be at least 1"
    );
    anyhow::ensure!(args.session_calls > 0, "--session-calls must be at least 1");

    let broker = MemoryBroker::new();
    let requests = broker.create_queue("requests", MemoryQueueOptions::default());
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(broker.inbox(&requests)?, broker.outbox())
        .max_in_flight(args.in_flight.max(64))
        // A memory queue answers a poll as soon as a message is there; a
        // short wait only makes shutdown (which lets a poll finish) quick.
        .wait(Duration::from_secs(1))
        .replay_window(Duration::from_secs(args.replay_window))
        .replay_budget(args.replay_budget << 20)
        .build(DemoServer::factory(Arc::new(DemoStats::default())))
        .spawn(shutdown.clone());

    println!(
        "asyncmcp soak: {} echo calls, {} in flight, memory broker; {}; replay window {} s, budget {} MiB\n",
        args.calls,
        args.in_flight,
        if args.sessions {
            format!("a new client every {} calls", args.session_calls)
        } else {
            "one client".to_owned()
        },
        args.replay_window,
        args.replay_budget,
    );
    println!(
        "| calls | RSS MiB | heap MiB | heap allocations | tokio tasks | request queue (visible/in flight) | reply queues open | sessions | calls/s |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|");

    let mut client = connect(&broker, &requests).await?;
    let mut sessions = 1;
    // Reply queues still there after their client closed (a list of them
    // would itself grow with the sessions).
    let mut left_behind = 0;
    let mut samples = Vec::with_capacity(args.calls / args.sample + 2);
    let mut done = 0;
    let mut since_sample = Instant::now();
    while done < args.calls {
        let mut stop = args.calls.min(next_multiple(done, args.sample));
        if args.sessions {
            stop = stop.min(next_multiple(done, args.session_calls));
        }
        run_calls(&client.0, stop - done, args.in_flight).await?;
        done = stop;
        if args.sessions && done % args.session_calls == 0 && done < args.calls {
            client.0.cancel().await?;
            if broker.inbox(&client.1).is_ok() {
                left_behind += 1;
            }
            client = connect(&broker, &requests).await?;
            sessions += 1;
        }
        if done % args.sample == 0 || done == args.calls {
            let rate = (done - samples.last().map_or(0, |s: &Sample| s.calls)) as f64
                / since_sample.elapsed().as_secs_f64();
            // The current client's queue, and any left behind.
            let open = left_behind + 1;
            samples.push(sample(
                done,
                &broker,
                &requests,
                open,
                sessions,
                &format!("{rate:.0}"),
            )?);
            since_sample = Instant::now();
        }
    }
    if args.linger > 0 {
        tokio::time::sleep(Duration::from_secs(args.linger)).await;
        run_calls(&client.0, 1, 1).await?;
        samples.push(sample(
            done + 1,
            &broker,
            &requests,
            left_behind + 1,
            sessions,
            &format!("after {} s idle", args.linger),
        )?);
    }
    client.0.cancel().await?;
    shutdown.cancel();
    server.await?;

    report(&args, &samples);
    Ok(())
}

/// A client with a reply queue of its own; returns it and that queue.
async fn connect(broker: &MemoryBroker, requests: &str) -> anyhow::Result<(Client, String)> {
    let transport = QueueClientTransport::memory(broker, requests)?;
    let reply_queue = transport.reply_queue().to_owned();
    Ok((().serve(transport).await?, reply_queue))
}

/// The first multiple of `step` above `n`.
fn next_multiple(n: usize, step: usize) -> usize {
    (n / step + 1) * step
}

/// Makes `calls` echo calls keeping `in_flight` outstanding, and waits for
/// them all.
async fn run_calls(client: &Client, calls: usize, in_flight: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..in_flight.clamp(1, calls.max(1))).map(|_| {
        let peer = client.peer().clone();
        let next = next.clone();
        tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let arguments = serde_json::json!({"text": "ping"});
                let request = CallToolRequestParams::new("echo")
                    .with_arguments(arguments.as_object().cloned().unwrap_or_default());
                let result = peer.call_tool(request).await?;
                anyhow::ensure!(
                    result.is_error != Some(true),
                    "echo failed: {:?}",
                    result.content
                );
            }
            anyhow::Ok(())
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker??;
    }
    Ok(())
}

/// Prints one table row and returns its figures.
fn sample(
    calls: usize,
    broker: &MemoryBroker,
    requests: &str,
    reply_queues: usize,
    sessions: usize,
    rate: &str,
) -> anyhow::Result<Sample> {
    let rss_mib = rss_kib()? as f64 / 1024.0;
    let heap_mib = LIVE_BYTES.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
    let allocations = LIVE_ALLOCATIONS.load(Ordering::Relaxed);
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let (visible, in_flight) = broker.depth(requests);
    println!(
        "| {calls} | {rss_mib:.1} | {heap_mib:.1} | {allocations} | {tasks} | {visible}/{in_flight} | {reply_queues} | {sessions} | {rate} |"
    );
    Ok(Sample {
        calls,
        rss_mib,
        heap_mib,
    })
}

/// The resident set size of this process, from `/proc/self/status`.
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("reading /proc/self/status (Linux only)")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/self/status")?;
    line.split_whitespace()
        .nth(1)
        .context("VmRSS without a value")?
        .parse()
        .context("VmRSS is not a number")
}

/// Says whether memory stayed within the bound after the first sample.
fn report(args: &Args, samples: &[Sample]) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return;
    };
    println!();
    if samples.len() < 2 {
        println!("one sample only: nothing to compare (lower --sample)");
        return;
    }
    for (what, a, b) in [
        ("RSS", first.rss_mib, last.rss_mib),
        ("live heap", first.heap_mib, last.heap_mib),
    ] {
        let bound = (a * args.tolerance_pct / 100.0).max(args.tolerance_mib);
        let grew = b - a;
        let verdict = if grew <= bound {
            "flat: within"
        } else {
            "GREW: over"
        };
        println!(
            "{what}: {a:.1} MiB after {} calls, {b:.1} MiB after {} ({grew:+.1} MiB); {verdict} the bound of {bound:.1} MiB (max of {}% and {} MiB)",
            first.calls, last.calls, args.tolerance_pct, args.tolerance_mib
        );
    }
    if args.replay_window > 0 {
        // Answers younger than the window are kept by design, up to the
        // budget: growth within the budget is the cache filling, not a leak.
        let grew = last.heap_mib - first.heap_mib;
        let within = if grew <= args.replay_budget as f64 + args.tolerance_mib {
            "within"
        } else {
            "OVER"
        };
        println!(
            "replay cache: keeps every answer of the last {} s, up to {} MiB; the heap grew {grew:.1} MiB, {within} that budget \
             (a run shorter than the window grows until the budget is reached, then stays flat)",
            args.replay_window, args.replay_budget
        );
    }
}

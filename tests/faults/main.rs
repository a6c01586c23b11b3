//! The fault suite, on LocalStack, with real processes. Each scenario ends
//! with one summary line, e.g.
//! `crash: 200 calls, 3 kills with [20, 20, 20] calls in flight, 200
//! answered, 0 lost, 7 duplicated effects`.
//!
//! A test of its own (`harness = false`): `cargo test --test faults [NAME]`
//! runs the scenarios whose name contains NAME, one after another, and
//! ends with `N passed, M failed` on a line of its own (exit 1 when any
//! failed). A NAME that matches no scenario is an error (exit 2), listing
//! the scenarios. It answers libtest's `--list` (and `--list --ignored`:
//! none) and `--exact NAME`, so cargo-nextest runs each scenario as a test
//! of its own.
//!
//! The server runs in a child process, this binary started again in the
//! server role (`FAULTS_SERVER_QUEUE` set), so that it can be killed with
//! SIGKILL mid-call. Its one tool, `work`, sleeps and then appends the
//! call's id to an effects file, which the parent reads to count how often
//! each call's effect happened.

mod crash;
mod duplicates;
mod hostile;
mod outage;
mod poison;
mod process;
mod send_retry;
mod sends;
mod shutdown;
mod stall;

/// One scenario of the suite.
type Scenario = fn() -> futures::future::BoxFuture<'static, ()>;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let (Ok(queue), Ok(effects)) = (
        std::env::var("FAULTS_SERVER_QUEUE"),
        std::env::var("FAULTS_EFFECTS_FILE"),
    ) {
        runtime.block_on(process::serve(queue, effects));
        return;
    }
    let scenarios: [(&str, Scenario); 8] = [
        ("crash", || Box::pin(crash::crash())),
        ("duplicates", || Box::pin(duplicates::duplicates())),
        ("outage", || Box::pin(outage::outage())),
        ("send_retry", || Box::pin(send_retry::send_retry())),
        ("stall", || Box::pin(stall::stall())),
        ("poison", || Box::pin(poison::poison())),
        ("shutdown", || Box::pin(shutdown::shutdown())),
        ("hostile", || Box::pin(hostile::hostile())),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |wanted: &str| args.iter().any(|arg| arg == wanted);
    if flag("--list") {
        // libtest's listing, which cargo-nextest reads: `--list --ignored` asks for the
        // ignored tests, and there are none (listing them there would make nextest skip them).
        if !flag("--ignored") {
            for (name, _) in scenarios {
                println!("{name}: test");
            }
        }
        return;
    }
    let filter = args
        .iter()
        .find(|arg| !arg.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    // `--exact NAME` (how cargo-nextest runs one test per process) matches the whole name.
    let exact = flag("--exact");
    let chosen: Vec<_> = scenarios
        .iter()
        .filter(|(name, _)| {
            if exact {
                *name == filter
            } else {
                name.contains(&filter)
            }
        })
        .collect();
    if chosen.is_empty() {
        // Loud: a mistyped name must not pass as a green run of nothing.
        let names: Vec<_> = scenarios.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "faults: no scenario matches {filter:?}; the scenarios are: {}",
            names.join(", ")
        );
        std::process::exit(2);
    }
    let mut failed = Vec::new();
    for (name, scenario) in &chosen {
        // A failing scenario (its panic message is printed by the hook) does
        // not keep the others from running.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(scenario())
        }));
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        eprintln!("faults: failed: {}", failed.join(", "));
    }
    // The closing line, on stdout as libtest prints its own.
    println!(
        "{} passed, {} failed",
        chosen.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

use super::*;
use crate::server::limits::settings::ToolLimit;

fn limits() -> ToolLimits {
    let mut limits = ToolLimits::default();
    limits.tools.insert(
        "slow".to_owned(),
        ToolLimit {
            concurrency: Some(2),
            rate: None,
        },
    );
    limits.tools.insert(
        "metered".to_owned(),
        ToolLimit {
            concurrency: None,
            rate: Rate::new(2.0, 2),
        },
    );
    limits
}

fn call<'a>(tool: &'a str, caller: &'a str, message_id: &'a str) -> Call<'a> {
    Call {
        tool,
        caller,
        message_id,
        sent_at: None,
    }
}

fn run(decision: Decision) -> Permit {
    match decision {
        Decision::Run(permit) => permit,
        other => panic!("expected to run, got {other:?}"),
    }
}

fn deferred(decision: Decision) -> (Duration, Limited) {
    match decision {
        Decision::Defer { delay, limit } => (delay, limit),
        other => panic!("expected a deferral, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_holds_and_frees_on_release() {
    let gate = Arc::new(Gate::new(limits()));
    let wall = SystemTime::now();
    let now = Instant::now();
    let first = run(gate.admit(call("slow", "a", "m1"), now, wall));
    let _second = run(gate.admit(call("slow", "b", "m2"), now, wall));
    let (delay, limit) = deferred(gate.admit(call("slow", "c", "m3"), now, wall));
    assert_eq!(
        limit.to_string(),
        "tool `slow` is at its limit of 2 calls at once on this replica"
    );
    assert_eq!(delay, MIN_DELAY, "no run ended yet: one assumed second");
    // Still no run ended, the oldest running for 5 s: about as long again.
    tokio::time::advance(Duration::from_secs(5)).await;
    let (delay, _) = deferred(gate.admit(call("slow", "c", "m3"), Instant::now(), wall));
    assert_eq!(delay, Duration::from_secs(5));
    let now = Instant::now();
    // Other tools are not held up.
    drop(run(gate.admit(call("echo", "c", "m4"), now, wall)));
    drop(first);
    let _third = run(gate.admit(call("slow", "c", "m3"), now, wall));
    assert_eq!(gate.deferrals("m3"), 2);
    assert_eq!(gate.deferrals("m4"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_delay_grows_with_the_line_and_the_run_time() {
    let gate = Arc::new(Gate::new(limits()));
    let wall = SystemTime::now();
    let start = Instant::now();
    let a = run(gate.admit(call("slow", "x", "a"), start, wall));
    let b = run(gate.admit(call("slow", "x", "b"), start, wall));
    tokio::time::advance(Duration::from_secs(4)).await;
    drop(a);
    drop(b);
    // Run time now 4 s; hold both slots again.
    let now = Instant::now();
    let _c = run(gate.admit(call("slow", "x", "c"), now, wall));
    let _d = run(gate.admit(call("slow", "x", "d"), now, wall));
    let delays: Vec<Duration> = (0..5)
        .map(|i| deferred(gate.admit(call("slow", "x", &format!("w{i}")), now, wall)).0)
        .collect();
    // Two slots: the 1st and 2nd in line wait one run, the 3rd and 4th two.
    assert_eq!(
        delays,
        [4, 4, 8, 8, 12].map(Duration::from_secs).to_vec(),
        "{delays:?}"
    );
    // Coming back, the first in line keeps its place.
    let (again, _) = deferred(gate.admit(call("slow", "x", "w0"), now, wall));
    assert_eq!(again, Duration::from_secs(4));
    assert_eq!(gate.deferrals("w0"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_allows_its_burst_then_its_rate() {
    let gate = Arc::new(Gate::new(limits()));
    let wall = SystemTime::now();
    let now = Instant::now();
    drop(run(gate.admit(call("metered", "a", "1"), now, wall)));
    drop(run(gate.admit(call("metered", "a", "2"), now, wall)));
    let (delay, limit) = deferred(gate.admit(call("metered", "a", "3"), now, wall));
    assert!(matches!(limit, Limited::Rate { .. }), "{limit}");
    assert_eq!(delay, MIN_DELAY, "one token in half a second, rounded up");
    tokio::time::advance(Duration::from_millis(500)).await;
    drop(run(gate.admit(
        call("metered", "a", "3"),
        Instant::now(),
        wall,
    )));
    let (_, limit) = deferred(gate.admit(call("metered", "a", "4"), Instant::now(), wall));
    assert!(
        limit.to_string().contains("rate limit of 2 calls a second"),
        "{limit}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_cap_holds_one_caller_and_lets_another_through() {
    let mut settings = limits();
    settings.per_caller = Some(1);
    let gate = Arc::new(Gate::new(settings));
    let wall = SystemTime::now();
    let now = Instant::now();
    let held = run(gate.admit(call("echo", "greedy", "1"), now, wall));
    let (_, limit) = deferred(gate.admit(call("echo", "greedy", "2"), now, wall));
    assert_eq!(limit, Limited::Caller { limit: 1 });
    drop(run(gate.admit(call("echo", "other", "3"), now, wall)));
    drop(held);
    drop(run(gate.admit(call("echo", "greedy", "2"), now, wall)));
}

#[tokio::test(start_paused = true)]
async fn past_the_maximum_wait_a_held_call_gives_up_by_the_broker_clock() {
    let mut settings = limits();
    settings.max_wait = Duration::from_secs(60);
    let gate = Arc::new(Gate::new(settings));
    let wall = SystemTime::now();
    let now = Instant::now();
    let _a = run(gate.admit(call("slow", "x", "a"), now, wall));
    let _b = run(gate.admit(call("slow", "x", "b"), now, wall));
    let mut old = call("slow", "x", "old");
    old.sent_at = wall.checked_sub(Duration::from_secs(61));
    match gate.admit(old, now, wall) {
        Decision::GiveUp { waited, limit } => {
            assert_eq!(waited, Duration::from_secs(61));
            assert!(matches!(limit, Limited::Concurrency { limit: 2, .. }));
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    // Close to the maximum: put back no later than it.
    let mut late = call("slow", "x", "late");
    late.sent_at = wall.checked_sub(Duration::from_millis(59_500));
    let (delay, _) = deferred(gate.admit(late, now, wall));
    assert_eq!(delay, MIN_DELAY);
    // A send time in the future (clock skew) counts as no wait.
    let mut future = call("slow", "x", "future");
    future.sent_at = wall.checked_add(Duration::from_secs(3600));
    deferred(gate.admit(future, now, wall));
}

#[tokio::test(start_paused = true)]
async fn without_a_send_time_the_wait_counts_from_the_first_deferral_here() {
    let mut settings = limits();
    settings.max_wait = Duration::from_secs(10);
    let gate = Arc::new(Gate::new(settings));
    let wall = SystemTime::now();
    let _a = run(gate.admit(call("slow", "x", "a"), Instant::now(), wall));
    let _b = run(gate.admit(call("slow", "x", "b"), Instant::now(), wall));
    deferred(gate.admit(call("slow", "x", "c"), Instant::now(), wall));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(matches!(
        gate.admit(call("slow", "x", "c"), Instant::now(), wall),
        Decision::GiveUp { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn the_ledger_is_bounded_and_forgets_the_oldest() {
    let mut ledger = Ledger::new(3);
    let now = Instant::now();
    for id in ["m0", "m1", "m2"] {
        ledger.deferred(id, "slow", now, now + MIN_DELAY);
    }
    // Put back again: counted, not added.
    ledger.deferred("m0", "slow", now, now + MIN_DELAY);
    assert_eq!(ledger.deferrals("m0"), 2);
    assert_eq!(ledger.len(), 3);
    for id in ["m3", "m4"] {
        ledger.deferred(id, "slow", now, now + MIN_DELAY);
    }
    assert_eq!(ledger.len(), 3, "never more than its capacity");
    assert_eq!(ledger.deferrals("m0"), 0, "the oldest forgotten first");
    assert_eq!(ledger.deferrals("m1"), 0);
    assert_eq!(ledger.deferrals("m4"), 1);
    assert_eq!(
        ledger.ahead("slow", "m4", now),
        2,
        "m2 and m3 are ahead of m4"
    );
    // One long stale is not counted as waiting.
    let later = now + MIN_DELAY + STALE_AFTER;
    assert_eq!(ledger.ahead("slow", "new", later), 0);
    const { assert!(LEDGER_CAPACITY >= 1_000) };
}

#[tokio::test(start_paused = true)]
async fn made_up_tool_names_leave_no_state_once_idle() {
    let mut settings = limits();
    settings.default.concurrency = Some(1);
    let gate = Arc::new(Gate::new(settings));
    let wall = SystemTime::now();
    for i in 0..100 {
        let name = format!("made-up-{i}");
        drop(run(gate.admit(
            call(&name, "x", &name),
            Instant::now(),
            wall,
        )));
    }
    assert!(gate.state().tools.is_empty());
    assert!(gate.state().callers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_default_rate_holds_for_a_tool_not_named_and_its_state_goes_once_refilled() {
    let mut settings = limits();
    settings.default.rate = Rate::new(1.0, 1);
    let gate = Arc::new(Gate::new(settings));
    let wall = SystemTime::now();
    drop(run(gate.admit(
        call("other", "x", "1"),
        Instant::now(),
        wall,
    )));
    let (_, limit) = deferred(gate.admit(call("other", "x", "2"), Instant::now(), wall));
    assert!(matches!(limit, Limited::Rate { .. }), "{limit}");
    // Made-up names up to the pruning bound keep state while their
    // buckets refill, and are pruned once they have.
    for i in 1..PRUNE_AT {
        let name = format!("made-up-{i}");
        drop(run(gate.admit(
            call(&name, "x", &name),
            Instant::now(),
            wall,
        )));
    }
    assert_eq!(gate.state().tools.len(), PRUNE_AT);
    tokio::time::advance(Duration::from_secs(2)).await;
    drop(run(gate.admit(
        call("again", "x", "a"),
        Instant::now(),
        wall,
    )));
    let left = gate.state().tools.len();
    assert!(left < 10, "{left} tools kept state after refilling");
}

#[test]
fn delays_are_whole_seconds_within_bounds() {
    assert_eq!(sized_delay(Duration::ZERO, MAX_DELAY), MIN_DELAY);
    assert_eq!(
        sized_delay(Duration::from_millis(2100), MAX_DELAY),
        Duration::from_secs(3)
    );
    assert_eq!(
        sized_delay(Duration::from_secs(86_400), Duration::MAX),
        MAX_DELAY
    );
    assert_eq!(
        sized_delay(Duration::from_secs(600), Duration::from_secs(30)),
        Duration::from_secs(30)
    );
}

//! The runtime of the limits: who runs now, who waits in the queue, and
//! for how long a call over a limit is put back.
//!
//! One [`Gate`] per server holds, under one lock, per limited tool the calls
//! running, its token bucket and an average of its run time; per caller the
//! calls running; and a bounded [`Ledger`] of the requests this replica put
//! back, by broker message id. A call either runs (holding a [`Permit`]
//! until its run ends), is put back with a delay sized to its expected
//! wait, or has waited past the maximum and is answered with an error.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::settings::{Rate, ToolLimits};

/// The shortest a call is put back for (SQS counts whole seconds).
pub(crate) const MIN_DELAY: Duration = Duration::from_secs(1);
/// The longest a call is put back for at once.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// The run time assumed for a tool before one of its runs has ended.
const FIRST_RUN_TIME: Duration = Duration::from_secs(1);
/// How much the newest run counts in the run-time average.
const RUN_TIME_WEIGHT: f64 = 0.3;
/// The most requests the ledger remembers; the oldest are forgotten first.
pub(crate) const LEDGER_CAPACITY: usize = 10_000;
/// Tools with state above which idle ones not named are pruned.
const PRUNE_AT: usize = 1024;
/// A put-back request not seen again this long after it was due is not
/// counted as waiting any more (another replica took it, or it was deleted).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Which limit held a call back; its `Display` names it for the caller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Limited {
    /// The tool's calls running at once.
    Concurrency { tool: String, limit: usize },
    /// The tool's calls a second.
    Rate { tool: String, rate: Rate },
    /// The caller's calls running at once.
    Caller { limit: usize },
}

impl fmt::Display for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Concurrency { tool, limit } => write!(
                f,
                "tool `{tool}` is at its limit of {limit} call{} at once on this replica",
                if *limit == 1 { "" } else { "s" }
            ),
            Self::Rate { tool, rate } => write!(
                f,
                "tool `{tool}` is at its rate limit of {} calls a second (burst {}) on this replica",
                rate.per_second, rate.burst
            ),
            Self::Caller { limit } => write!(
                f,
                "this caller is at its limit of {limit} tool call{} at once on this replica",
                if *limit == 1 { "" } else { "s" }
            ),
        }
    }
}

/// What to do with one call.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Run it, holding the permit until the run ends.
    Run(Permit),
    /// Put it back in the queue for `delay`.
    Defer { delay: Duration, limit: Limited },
    /// It waited `waited`, past the maximum: answer with an error.
    GiveUp { waited: Duration, limit: Limited },
}

/// One `tools/call` delivery, as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) tool: &'a str,
    /// The route's origin (session, else `ClientId`, else reply address).
    pub(crate) caller: &'a str,
    /// The broker's message id (not forgeable by a sender).
    pub(crate) message_id: &'a str,
    /// When the broker took the message, if it says.
    pub(crate) sent_at: Option<SystemTime>,
}

struct ToolState {
    running: usize,
    /// When each running call started, by run number (oldest first).
    starts: BTreeMap<u64, Instant>,
    tokens: f64,
    refilled: Instant,
    run_time: Option<Duration>,
}

impl ToolState {
    fn refill(&mut self, rate: Option<Rate>, now: Instant) {
        if let Some(rate) = rate {
            let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        }
        self.refilled = now;
    }

    /// The expected run time: the average of ended runs; before one has
    /// ended, as long as the oldest running call has run so far (at least
    /// [`FIRST_RUN_TIME`]), so that calls waiting behind a long first run
    /// are put back for ever longer, not every second.
    fn run_time(&self, now: Instant) -> Duration {
        self.run_time.unwrap_or_else(|| {
            self.starts
                .first_key_value()
                .map_or(Duration::ZERO, |(_, &start)| {
                    now.saturating_duration_since(start)
                })
                .max(FIRST_RUN_TIME)
        })
    }
}

struct Entry {
    tool: String,
    ticket: u64,
    deferrals: u32,
    first: Instant,
    due: Instant,
    waiting: bool,
}

/// The requests this replica put back, by broker message id, at most
/// [`LEDGER_CAPACITY`] (the oldest forgotten first): how often each was put
/// back (subtracted from its receive count, so deferrals never make a
/// request poison), since when, and its place in its tool's line.
pub(crate) struct Ledger {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
    next_ticket: u64,
    capacity: usize,
}

impl Ledger {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_ticket: 0,
            capacity: capacity.max(1),
        }
    }

    fn deferred(&mut self, message_id: &str, tool: &str, now: Instant, due: Instant) {
        if let Some(entry) = self.entries.get_mut(message_id) {
            entry.deferrals = entry.deferrals.saturating_add(1);
            entry.due = due;
            entry.waiting = true;
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.next_ticket += 1;
        self.entries.insert(
            message_id.to_owned(),
            Entry {
                tool: tool.to_owned(),
                ticket: self.next_ticket,
                deferrals: 1,
                first: now,
                due,
                waiting: true,
            },
        );
        self.order.push_back(message_id.to_owned());
    }

    /// Times this replica put `message_id` back (as far as it remembers).
    pub(crate) fn deferrals(&self, message_id: &str) -> u32 {
        self.entries
            .get(message_id)
            .map_or(0, |entry| entry.deferrals)
    }

    fn stop_waiting(&mut self, message_id: &str) {
        if let Some(entry) = self.entries.get_mut(message_id) {
            entry.waiting = false;
        }
    }

    /// Requests put back for `tool` and still waiting ahead of `message_id`
    /// (all of them, when it is not in line yet).
    fn ahead(&self, tool: &str, message_id: &str, now: Instant) -> usize {
        let mine = self
            .entries
            .get(message_id)
            .filter(|entry| entry.waiting)
            .map_or(u64::MAX, |entry| entry.ticket);
        self.entries
            .values()
            .filter(|entry| {
                entry.waiting
                    && entry.tool == tool
                    && entry.ticket < mine
                    && now < entry.due + STALE_AFTER
            })
            .count()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct State {
    tools: HashMap<String, ToolState>,
    /// Idle tools not named are pruned when this many tools have state.
    prune_at: usize,
    /// The number of the last run started.
    next_run: u64,
    callers: HashMap<String, usize>,
    ledger: Ledger,
}

/// The limits of one server at run time; see the [module docs](self).
pub(crate) struct Gate {
    limits: ToolLimits,
    state: Mutex<State>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Gate {
    pub(crate) fn new(limits: ToolLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State {
                tools: HashMap::new(),
                prune_at: PRUNE_AT,
                next_run: 0,
                callers: HashMap::new(),
                ledger: Ledger::new(LEDGER_CAPACITY),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Times this replica put `message_id` back, to subtract from its
    /// receive count.
    pub(crate) fn deferrals(&self, message_id: &str) -> u32 {
        self.state().ledger.deferrals(message_id)
    }

    /// Decides about `call` at `now` (`wall`: the wall clock, to compare
    /// with the broker's send time).
    pub(crate) fn admit(
        self: &Arc<Self>,
        call: Call<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> Decision {
        let limit = self.limits.of(call.tool);
        let mut guard = self.state();
        let state = &mut *guard;
        if state.tools.len() >= state.prune_at {
            let (limits, default_rate) = (&self.limits, self.limits.default.rate);
            state
                .tools
                .retain(|name, tool| limits.names(name) || !is_idle(tool, default_rate, now));
            state.prune_at = (state.tools.len() * 2).max(PRUNE_AT);
        }
        if limit.is_set() {
            let tool = state
                .tools
                .entry(call.tool.to_owned())
                .or_insert_with(|| ToolState {
                    running: 0,
                    starts: BTreeMap::new(),
                    tokens: limit.rate.map_or(0.0, |rate| f64::from(rate.burst)),
                    refilled: now,
                    run_time: None,
                });
            tool.refill(limit.rate, now);
        }
        let tool = state.tools.get(call.tool);
        let running_here = state.callers.get(call.caller).copied().unwrap_or(0);
        let held = match (limit.concurrency, limit.rate, self.limits.per_caller, tool) {
            (Some(n), _, _, Some(tool)) if tool.running >= n => Some(Limited::Concurrency {
                tool: call.tool.to_owned(),
                limit: n,
            }),
            (_, _, Some(n), _) if running_here >= n => Some(Limited::Caller { limit: n }),
            (_, Some(rate), _, Some(tool)) if tool.tokens < 1.0 => Some(Limited::Rate {
                tool: call.tool.to_owned(),
                rate,
            }),
            _ => None,
        };
        let Some(held) = held else {
            state.next_run += 1;
            let run = state.next_run;
            if let Some(tool) = state.tools.get_mut(call.tool) {
                tool.running += 1;
                tool.starts.insert(run, now);
                if limit.rate.is_some() {
                    tool.tokens -= 1.0;
                }
            }
            let caller = self.limits.per_caller.map(|_| {
                *state.callers.entry(call.caller.to_owned()).or_insert(0) += 1;
                call.caller.to_owned()
            });
            state.ledger.stop_waiting(call.message_id);
            return Decision::Run(Permit {
                gate: self.clone(),
                tool: limit.is_set().then(|| call.tool.to_owned()),
                caller,
                run,
                started: now,
            });
        };
        let waited = match call.sent_at {
            Some(sent) => wall.duration_since(sent).unwrap_or_default(),
            None => state
                .ledger
                .entries
                .get(call.message_id)
                .map_or(Duration::ZERO, |entry| {
                    now.saturating_duration_since(entry.first)
                }),
        };
        if waited >= self.limits.max_wait {
            state.ledger.stop_waiting(call.message_id);
            return Decision::GiveUp {
                waited,
                limit: held,
            };
        }
        let ahead = state.ledger.ahead(call.tool, call.message_id, now);
        let tool = state.tools.get(call.tool);
        let run_time = tool.map_or(FIRST_RUN_TIME, |tool| tool.run_time(now));
        let expected = match &held {
            Limited::Concurrency { limit, .. } => {
                let rounds = (ahead + 1).div_ceil((*limit).max(1));
                run_time.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
            }
            Limited::Rate { rate, .. } => {
                let tokens = tool.map_or(0.0, |tool| tool.tokens);
                let needed = (ahead as f64 + 1.0 - tokens).max(0.0);
                Duration::try_from_secs_f64(needed / rate.per_second).unwrap_or(MAX_DELAY)
            }
            Limited::Caller { .. } => run_time,
        };
        let delay = sized_delay(expected, self.limits.max_wait.saturating_sub(waited));
        state
            .ledger
            .deferred(call.message_id, call.tool, now, now + delay);
        Decision::Defer { delay, limit: held }
    }

    fn release(&self, tool: Option<&str>, caller: Option<&str>, run: u64, ran: Duration) {
        let mut state = self.state();
        if let Some(name) = tool
            && let Some(tool) = state.tools.get_mut(name)
        {
            tool.running = tool.running.saturating_sub(1);
            tool.starts.remove(&run);
            tool.run_time = Some(match tool.run_time {
                Some(average) => {
                    average.mul_f64(1.0 - RUN_TIME_WEIGHT) + ran.mul_f64(RUN_TIME_WEIGHT)
                }
                None => ran,
            });
            // A tool not named has its state only while it is busy or its
            // bucket is refilling, so names a sender makes up cannot grow it
            // without bound (the rest are pruned in `admit`).
            if !self.limits.names(name) && is_idle(tool, self.limits.default.rate, Instant::now()) {
                state.tools.remove(name);
            }
        }
        if let Some(caller) = caller
            && let Some(running) = state.callers.get_mut(caller)
        {
            *running = running.saturating_sub(1);
            if *running == 0 {
                state.callers.remove(caller);
            }
        }
    }
}

/// Whether `tool` has no call running and a full bucket (if any) at `now`:
/// its state is then the same as a fresh one.
fn is_idle(tool: &mut ToolState, rate: Option<Rate>, now: Instant) -> bool {
    tool.refill(rate, now);
    tool.running == 0 && rate.is_none_or(|rate| tool.tokens >= f64::from(rate.burst))
}

/// `expected` rounded up to whole seconds, within [`MIN_DELAY`] and
/// [`MAX_DELAY`], and not past the `left` of the call's maximum wait (by
/// more than the minimum), so an expired call comes back to be answered.
fn sized_delay(expected: Duration, left: Duration) -> Duration {
    let capped = expected.min(MAX_DELAY).min(left);
    let secs = capped.as_secs() + u64::from(capped.subsec_nanos() > 0);
    Duration::from_secs(secs).max(MIN_DELAY)
}

/// A call's place among those running; released when dropped.
pub(crate) struct Permit {
    gate: Arc<Gate>,
    tool: Option<String>,
    caller: Option<String>,
    /// Its run number, to find its start among the tool's.
    run: u64,
    started: Instant,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("tool", &self.tool)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let ran = Instant::now().saturating_duration_since(self.started);
        self.gate
            .release(self.tool.as_deref(), self.caller.as_deref(), self.run, ran);
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;

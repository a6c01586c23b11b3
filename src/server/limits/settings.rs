//! [`ToolLimits`]: the per-tool and per-caller limits an operator sets.

use std::collections::BTreeMap;
use std::time::Duration;

/// The default [`ToolLimits::max_wait`]: 15 minutes.
pub const DEFAULT_MAX_LIMIT_WAIT: Duration = Duration::from_secs(15 * 60);

/// A token bucket: `per_second` calls a second on average, up to `burst`
/// at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Rate {
    /// Tokens added a second (above 0).
    pub per_second: f64,
    /// The most tokens kept (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` calls a second with bursts of `burst`; a rate that is
    /// not a positive finite number is `None`, a burst of 0 is 1.
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then_some(Self {
            per_second,
            burst: burst.max(1),
        })
    }
}

/// The limits of one tool, per replica. Default: none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct ToolLimit {
    /// Calls of the tool running at once (at least 1).
    pub concurrency: Option<usize>,
    /// Calls of the tool started a second.
    pub rate: Option<Rate>,
}

impl ToolLimit {
    /// Whether this limits anything.
    pub fn is_set(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }
}

/// Limits on `tools/call` requests, per replica (see
/// [`limits`](crate::server::limits)). A call over a limit waits in the
/// queue, not in the server. Default: no limits.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolLimits {
    /// Limits of the tools named, by tool name.
    pub tools: BTreeMap<String, ToolLimit>,
    /// Limits of each tool not named in [`tools`](Self::tools), each on its
    /// own (not shared between them).
    pub default: ToolLimit,
    /// Tool calls of one caller (its session, else its `ClientId`, else its
    /// reply address) running at once.
    pub per_caller: Option<usize>,
    /// How long a call may wait for its limits, counted from when the broker
    /// took the request; past it the call is answered with the error
    /// [`LIMIT_WAIT_EXCEEDED`](crate::server::limits::LIMIT_WAIT_EXCEEDED).
    /// Default [`DEFAULT_MAX_LIMIT_WAIT`].
    pub max_wait: Duration,
}

impl Default for ToolLimits {
    fn default() -> Self {
        Self {
            tools: BTreeMap::new(),
            default: ToolLimit::default(),
            per_caller: None,
            max_wait: DEFAULT_MAX_LIMIT_WAIT,
        }
    }
}

impl ToolLimits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.per_caller.is_some()
            || self.default.is_set()
            || self.tools.values().any(ToolLimit::is_set)
    }

    /// The limits of `tool`.
    pub fn of(&self, tool: &str) -> ToolLimit {
        self.tools.get(tool).copied().unwrap_or(self.default)
    }

    /// Whether `tool` has limits of its own (named), rather than the default.
    pub fn names(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }
}

//! `serve --tool-limit` and friends: per-tool concurrency and rate limits
//! and a per-caller cap for the wrapped server's tools.
//!
//! The library does the work ([`asyncmcp::server::limits`]): a `tools/call`
//! over a limit is put back in the queue with a delay sized to its expected
//! wait, so it waits there, not in `serve` nor in one of its
//! `--max-in-flight` slots, and calls of other tools go on. Limits count
//! per `serve` process: with several replicas on one queue, divide them.
//! This module turns the flags into [`ToolLimits`].
//!
//! # What a sender can do with it
//!
//! Whoever can send to the request queue can already call every tool. A
//! flood of one tool's calls waits in the queue (each deferral is one
//! `ChangeMessageVisibility`, and at most about `--max-limit-wait` / 1 s per
//! call); made-up tool names fall under `--default-tool-limit`; a sender
//! copying another client's `ClientId` shares its `--caller-limit` on this
//! replica. See the library's module docs for the whole list.

use std::time::Duration;

use asyncmcp::server::limits::{DEFAULT_MAX_LIMIT_WAIT, Rate, ToolLimits};

/// The limit flags of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LimitArgs {
    /// Run at most N calls of tool NAME at once in this process
    /// (repeatable); more wait in the queue, without holding up other tools.
    #[arg(long, value_name = "NAME=N", value_parser = parse_tool_limit)]
    tool_limit: Vec<(String, usize)>,
    /// Start at most PER_SECOND calls of tool NAME a second in this process,
    /// in bursts of up to BURST (default 1) (repeatable; e.g. `search=5/10`,
    /// `export=0.5`); more wait in the queue.
    #[arg(long, value_name = "NAME=PER_SECOND[/BURST]", value_parser = parse_tool_rate)]
    tool_rate: Vec<(String, Rate)>,
    /// Run at most N calls at once of each tool not named by --tool-limit
    /// or --tool-rate (each such tool on its own) [default: no limit].
    #[arg(long, env = "ASYNCMCP_DEFAULT_TOOL_LIMIT", value_name = "N", value_parser = parse_count)]
    default_tool_limit: Option<usize>,
    /// Run at most N tool calls of one caller (session, else ClientId) at
    /// once in this process [default: no limit].
    #[arg(long, env = "ASYNCMCP_CALLER_LIMIT", value_name = "N", value_parser = parse_count)]
    caller_limit: Option<usize>,
    /// How long a call may wait in the queue for its limits, from when it
    /// was sent; past it the call is answered with error -32003 naming the
    /// limit (e.g. `30s`, `15m`) [default: 15m].
    #[arg(long, env = "ASYNCMCP_MAX_LIMIT_WAIT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_limit_wait: Option<Duration>,
}

impl LimitArgs {
    /// The limits, or `None` when no flag sets one.
    pub(crate) fn limits(&self) -> Option<ToolLimits> {
        let mut limits = ToolLimits::default();
        for (name, calls) in &self.tool_limit {
            limits.tools.entry(name.clone()).or_default().concurrency = Some(*calls);
        }
        for (name, rate) in &self.tool_rate {
            limits.tools.entry(name.clone()).or_default().rate = Some(*rate);
        }
        limits.default.concurrency = self.default_tool_limit;
        limits.per_caller = self.caller_limit;
        limits.max_wait = self.max_limit_wait.unwrap_or(DEFAULT_MAX_LIMIT_WAIT);
        limits.is_set().then_some(limits)
    }
}

/// A count of calls: a whole number from 1.
fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number of calls")),
    }
}

/// `NAME=VALUE`, with a non-empty name.
fn split_named(text: &str) -> Result<(String, &str), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not NAME=VALUE"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` names no tool"));
    }
    Ok((name.to_owned(), value))
}

/// `NAME=N`.
fn parse_tool_limit(text: &str) -> Result<(String, usize), String> {
    let (name, value) = split_named(text)?;
    Ok((name, parse_count(value)?))
}

/// `NAME=PER_SECOND[/BURST]`.
fn parse_tool_rate(text: &str) -> Result<(String, Rate), String> {
    let (name, value) = split_named(text)?;
    let (rate, burst) = match value.split_once('/') {
        Some((rate, burst)) => (rate, parse_count(burst)?),
        None => (value, 1),
    };
    let per_second = rate
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("`{rate}` is not a number of calls a second"))?;
    let burst = u32::try_from(burst).map_err(|_| format!("burst {burst} is too large"))?;
    let rate = Rate::new(per_second, burst)
        .ok_or_else(|| format!("`{rate}` calls a second must be above 0"))?;
    Ok((name, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_values_say_why() {
        assert_eq!(parse_tool_limit("slow=2"), Ok(("slow".to_owned(), 2)));
        assert!(parse_tool_limit("slow").unwrap_err().contains("NAME=VALUE"));
        assert!(
            parse_tool_limit("=2")
                .unwrap_err()
                .contains("names no tool")
        );
        assert!(
            parse_tool_limit("slow=0")
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(
            parse_tool_limit("slow=x")
                .unwrap_err()
                .contains("not a whole number")
        );
        let (name, rate) = parse_tool_rate("search=5/10").expect("parses");
        assert_eq!(
            (name.as_str(), rate.per_second, rate.burst),
            ("search", 5.0, 10)
        );
        assert_eq!(parse_tool_rate("export=0.5").expect("parses").1.burst, 1);
        assert!(parse_tool_rate("export=0").unwrap_err().contains("above 0"));
        assert!(
            parse_tool_rate("export=-1")
                .unwrap_err()
                .contains("above 0")
        );
        assert!(
            parse_tool_rate("export=NaN")
                .unwrap_err()
                .contains("above 0")
        );
        assert!(
            parse_tool_rate("export=fast")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_tool_rate("export=1/0")
                .unwrap_err()
                .contains("at least 1")
        );
    }

    #[test]
    fn no_flag_sets_no_limits() {
        let args = LimitArgs {
            tool_limit: Vec::new(),
            tool_rate: Vec::new(),
            default_tool_limit: None,
            caller_limit: None,
            max_limit_wait: Some(Duration::from_secs(5)),
        };
        assert_eq!(args.limits(), None);
        let args = LimitArgs {
            tool_limit: vec![("slow".to_owned(), 1)],
            ..args
        };
        let limits = args.limits().expect("a limit");
        assert_eq!(limits.of("slow").concurrency, Some(1));
        assert_eq!(limits.max_wait, Duration::from_secs(5));
    }
}

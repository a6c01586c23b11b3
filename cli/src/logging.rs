//! Logging to stderr through `tracing`.
//!
//! The filter comes from `ASYNCMCP_LOG`, else `RUST_LOG`, in
//! `tracing-subscriber`'s [`EnvFilter`] syntax (`debug`,
//! `warn,asyncmcp=debug`, ...); unset or empty, it is [`DEFAULT_FILTER`]. An
//! invalid filter is reported on stderr and the default is used instead, so a
//! typo never stops the command. Colours only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variables read for the log filter, the first one set (and not empty) wins.
const FILTER_VARS: [&str; 2] = ["ASYNCMCP_LOG", "RUST_LOG"];

/// The filter when no variable sets one: warnings and errors only, so a
/// command's stderr stays quiet unless something is wrong.
const DEFAULT_FILTER: &str = "warn";

/// Installs the global `tracing` subscriber, writing to stderr.
pub(crate) fn init() {
    let chosen = chosen_filter(|name| std::env::var(name).ok());
    let (filter, rejected) = match &chosen {
        Some((_, directives)) => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e)),
        },
        None => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    if let (Some((var, directives)), Some(error)) = (chosen, rejected) {
        tracing::warn!("ignoring {var}={directives:?} ({error}); logging at {DEFAULT_FILTER:?}");
    }
}

/// The variable that sets the filter and its value, looked up with `var`.
fn chosen_filter(var: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    FILTER_VARS.into_iter().find_map(|name| {
        var(name)
            .filter(|value| !value.trim().is_empty())
            .map(|value| (name, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn asyncmcp_log_wins_over_rust_log() {
        let vars = lookup(&[("RUST_LOG", "info"), ("ASYNCMCP_LOG", "debug")]);
        assert_eq!(
            chosen_filter(vars),
            Some(("ASYNCMCP_LOG", "debug".to_string()))
        );
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let vars = lookup(&[("ASYNCMCP_LOG", " "), ("RUST_LOG", "info")]);
        assert_eq!(chosen_filter(vars), Some(("RUST_LOG", "info".to_string())));
        assert_eq!(chosen_filter(lookup(&[("ASYNCMCP_LOG", "")])), None);
    }
}

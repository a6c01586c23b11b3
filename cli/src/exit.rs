//! How a subcommand ends: its exit code, and the one line on stderr that
//! says why when it failed.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; the result is on stdout |
//! | 1 | failure: AWS or the transport failed, the server answered with a JSON-RPC error (printed on stderr), or with something that is not the result asked for |
//! | 2 | usage: bad flags or settings (clap's own code), tool arguments that are not a JSON object, a signing key that cannot be read; nothing was sent |
//! | 3 | the tool ran and reported an error (`isError: true`); its result is on stdout all the same |
//! | 124 | `--timeout` passed (as `timeout(1)`); a call in progress was cancelled |
//! | 130 | interrupted by SIGINT (Ctrl-C); a call in progress was cancelled |
//! | 143 | stopped by SIGTERM; a call in progress was cancelled |
//!
//! Whatever the code, what the command created (its reply queue) is removed
//! before it exits.

use std::process::ExitCode;
use std::time::Duration;

use rmcp::model::ErrorData;

use crate::output;
use crate::signals::Signal;

/// How a subcommand that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// It did what was asked.
    Success,
    /// The tool ran and reported an error (`isError: true`).
    ToolError,
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Bad input from the user, found before anything was sent.
    #[error("{0}")]
    Usage(String),
    /// The server answered `method` with a JSON-RPC error.
    #[error("the server answered {method} with a JSON-RPC error: {}", output::json_line(.error))]
    JsonRpc {
        /// The request that failed (`initialize`, `tools/call`, ...).
        method: &'static str,
        /// The error, as the server sent it.
        error: ErrorData,
    },
    /// The deadline (`--timeout`) passed.
    #[error("no answer within {} (--timeout)", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// A signal stopped the command.
    #[error("stopped by {0}")]
    Interrupted(Signal),
    /// Anything else: AWS, the transport, an unexpected answer.
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl Failure {
    /// Any other error.
    pub(crate) fn other(error: impl Into<anyhow::Error>) -> Self {
        Self::Other(error.into())
    }

    /// The exit code of this failure.
    fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::JsonRpc { .. } | Self::Other(_) => 1,
            Self::TimedOut(_) => 124,
            Self::Interrupted(signal) => signal.exit_code(),
        }
    }
}

/// Prints why `result` failed, if it did, on stderr, and gives its exit code.
pub(crate) fn report(result: Result<Done, Failure>) -> ExitCode {
    match result {
        Ok(Done::Success) => ExitCode::SUCCESS,
        Ok(Done::ToolError) => ExitCode::from(3),
        Err(failure) => {
            // The text may carry what a server sent: made safe for a terminal.
            eprintln!("asyncmcp: {}", output::printable(&failure.to_string()));
            ExitCode::from(failure.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_documented_code() {
        assert_eq!(Failure::Usage("x".into()).code(), 2);
        assert_eq!(Failure::other(anyhow::anyhow!("x")).code(), 1);
        let error = ErrorData::invalid_params("unknown tool", None);
        assert_eq!(
            Failure::JsonRpc {
                method: "tools/call",
                error
            }
            .code(),
            1
        );
        assert_eq!(Failure::TimedOut(Duration::from_secs(1)).code(), 124);
        assert_eq!(Failure::Interrupted(Signal::Interrupt).code(), 130);
        assert_eq!(Failure::Interrupted(Signal::Terminate).code(), 143);
    }

    #[test]
    fn a_json_rpc_error_is_shown_as_json() {
        let failure = Failure::JsonRpc {
            method: "tools/call",
            error: ErrorData::invalid_params("tool not found", None),
        };
        let text = failure.to_string();
        let json = text
            .split_once(": ")
            .map(|(_, json)| json)
            .expect("a JSON part");
        let error: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
        assert_eq!(error["code"], -32602);
        assert_eq!(error["message"], "tool not found");
    }
}

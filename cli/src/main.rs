//! The `asyncmcp` command: Model Context Protocol over queues (AWS SQS, SNS).
//!
//! # Output
//!
//! stdout is reserved for protocol traffic and results: an MCP connection
//! over stdio, or JSON that a caller pipes into `jq`. Nothing else is ever
//! written there. Logs, warnings and errors go to stderr (see [`logging`]).

mod logging;

use std::process::ExitCode;

use clap::Parser;

/// Model Context Protocol over queues (AWS SQS, SNS).
#[derive(Debug, Parser)]
#[command(name = "asyncmcp", version, arg_required_else_help = true)]
struct Cli {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    tracing::debug!(?cli, "parsed the command line");
    ExitCode::SUCCESS
}

//! The `asyncmcp` command: Model Context Protocol over queues (AWS SQS, SNS).
//!
//! This file holds only the command line's shape and the dispatch; each
//! subcommand is a module of its own.
//!
//! # Output
//!
//! stdout is reserved for protocol traffic and results: an MCP connection
//! over stdio, or JSON that a caller pipes into `jq`. Nothing else is ever
//! written there. Logs, warnings and errors go to stderr (see [`logging`]).
//! A failed command prints `asyncmcp: error: …` on stderr and exits with 1
//! (2 for a command line clap refuses).

mod aws;
mod dlq;
mod logging;
mod safe;
mod setup;

use std::process::ExitCode;

use asyncmcp::queue::QueueError;
use clap::{Parser, Subcommand};

/// Model Context Protocol over queues (AWS SQS, SNS).
#[derive(Debug, Parser)]
#[command(name = "asyncmcp", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the queues and topics a deployment needs, idempotently, and
    /// prints their URLs and ARNs.
    Setup(setup::Args),
    /// Lists the requests in a dead-letter queue, or sends them back.
    #[command(subcommand, after_help = dlq::EXAMPLES)]
    Dlq(dlq::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    tracing::debug!(?cli, "parsed the command line");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting tokio")),
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Setup(args) => setup::run(args).await,
        Command::Dlq(command) => dlq::run(command).await,
    }
}

/// Reports `error` with its causes on one line of stderr; the exit code of
/// a failure.
fn fail(error: &anyhow::Error) -> ExitCode {
    // The causes can quote what a queue or an endpoint said: escaped.
    eprintln!("asyncmcp: error: {}", safe::escaped(&describe(error)));
    ExitCode::FAILURE
}

/// `error` and its causes, joined with `: `. The message of a
/// [`QueueError::Service`] with a source repeats that source's chain and
/// adds the AWS SDK's debug dump of it: the chain alone is said.
fn describe(error: &anyhow::Error) -> String {
    let parts: Vec<String> = error
        .chain()
        .map(|cause| match cause.downcast_ref::<QueueError>() {
            Some(QueueError::Service {
                source: Some(_), ..
            }) => "broker call failed".to_owned(),
            _ => cause.to_string(),
        })
        .collect();
    parts.join(": ")
}

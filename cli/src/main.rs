//! The `asyncmcp` command: Model Context Protocol over queues (AWS SQS, SNS).
//!
//! # Output
//!
//! stdout is reserved for protocol traffic and results: an MCP connection
//! over stdio, or JSON that a caller pipes into `jq`. Nothing else is ever
//! written there. Logs, warnings and errors go to stderr (see [`logging`]).
//!
//! # Layout
//!
//! This file holds only the subcommands and their dispatch; each subcommand
//! is a module of its own; `serve` and `proxy` share [`bridge`] (forwarding
//! MCP between two connections). What several share: [`connect`] (reaching a
//! queue-backed server), [`session`] (one MCP client session, its deadline
//! and signals), [`task`] (following a task `call` started), [`exit`] (exit
//! codes and error reports of `call`/`tools`),
//! [`output`] (JSON on stdout), [`progress`] (the progress bar), [`aws`]
//! (AWS clients for `setup`/`dlq`), [`safe`] (printing untrusted text).
//! `setup` and `dlq` report a failure as `asyncmcp: error: …` on stderr and
//! exit with 1 (2 for a command line clap refuses).

mod aws;
mod batch;
mod bridge;
mod call;
mod connect;
mod dlq;
mod exit;
mod logging;
mod offload;
mod output;
mod progress;
mod proxy;
mod safe;
mod serve;
mod session;
mod setup;
mod signals;
mod task;
mod tools;
mod webhook_replies;
mod webhook_secret;

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
    /// Runs a stdio MCP server (any language) as a queue worker.
    Serve(serve::ServeArgs),
    /// Serves a queue-backed (or webhook) MCP server to a local MCP client, over stdio
    /// or Streamable HTTP.
    Proxy(proxy::ProxyArgs),
    /// Calls one tool of a queue-backed MCP server; its result as JSON on stdout.
    Call(call::CallArgs),
    /// Lists the tools of a queue-backed MCP server as JSON on stdout.
    Tools(tools::ToolsArgs),
    /// Runs many tool calls from a JSON-lines file, one result line per key;
    /// resumable after a crash or a stop.
    Batch(batch::BatchArgs),
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
    // A server forwards many calls at once: all cores. The clients make one
    // call or a few: one thread.
    let mut runtime = match &cli.command {
        Command::Serve(_) | Command::Proxy(_) | Command::Batch(_) => {
            tokio::runtime::Builder::new_multi_thread()
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return exit::report(Err(exit::Failure::other(error))),
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Proxy(args) => {
            let code = exit::report(runtime.block_on(proxy::run(args)));
            // The read of stdin under way blocks a thread no shutdown can
            // end: leave it behind rather than wait.
            runtime.shutdown_background();
            code
        }
        Command::Call(args) => exit::report(runtime.block_on(call::run(args))),
        Command::Tools(args) => exit::report(runtime.block_on(tools::run(args))),
        Command::Batch(args) => runtime.block_on(batch::run(args)),
        Command::Setup(args) => or_fail(runtime.block_on(setup::run(args))),
        Command::Dlq(command) => or_fail(runtime.block_on(dlq::run(command))),
    }
}

/// The exit code of an administrative command: its own, or a failure
/// reported with its causes on one line of stderr.
fn or_fail(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            // The causes can quote what a queue or an endpoint said: escaped.
            eprintln!("asyncmcp: error: {}", safe::escaped(&describe(&error)));
            ExitCode::FAILURE
        }
    }
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

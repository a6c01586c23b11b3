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
//! is a module of its own. What several share: [`connect`] (reaching a
//! queue-backed server), [`session`] (one MCP client session, its deadline
//! and signals), [`exit`] (exit codes and error reports), [`output`] (JSON on
//! stdout), [`progress`] (the progress bar).

mod call;
mod connect;
mod exit;
mod logging;
mod output;
mod progress;
mod session;
mod signals;
mod tools;

use std::process::ExitCode;

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
    /// Calls one tool of a queue-backed MCP server; its result as JSON on stdout.
    Call(call::CallArgs),
    /// Lists the tools of a queue-backed MCP server as JSON on stdout.
    Tools(tools::ToolsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    tracing::debug!(?cli, "parsed the command line");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return exit::report(Err(exit::Failure::other(error))),
    };
    exit::report(runtime.block_on(async {
        match cli.command {
            Command::Call(args) => call::run(args).await,
            Command::Tools(args) => tools::run(args).await,
        }
    }))
}

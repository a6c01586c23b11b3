//! The process-per-request baseline: what wrapping a stdio MCP server in a
//! function per request (AWS's Lambda MCP wrapper) costs.
//!
//! For each `tools/call` taken from the queue, a fresh server process is
//! started, initialized, asked the call, and stopped (stdin closed, then
//! waited for) before the answer goes back, as such a wrapper's handler
//! does. The queue side is the library's [`QueueServer`], the same as the
//! other stacks', so the difference measured is the process per request.
//! It handles as many requests at once as the client has in flight; at 1
//! in flight that is one process after another, the wrapper's own shape.
//!
//! [`QueueServer`]: asyncmcp::QueueServer

use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::process::Command;

use crate::RoleArgs;

/// The `per-request` role's settings.
#[derive(clap::Args, Clone)]
pub struct PerRequestArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    /// The stdio MCP server to start per request.
    #[arg(long)]
    pub program: String,
    /// Its arguments (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Serves the request queue, a fresh server process per tool call.
pub async fn serve(args: PerRequestArgs) -> anyhow::Result<()> {
    let handler = PerRequest {
        command: Arc::new((args.program, args.args)),
    };
    crate::ours::serve_with(args.role, move || handler.clone()).await
}

/// The service run for each request: it answers `initialize` itself (the
/// client's one handshake with the queue) and runs every tool call in a
/// process of its own.
#[derive(Clone)]
struct PerRequest {
    command: Arc<(String, Vec<String>)>,
}

impl PerRequest {
    /// Start, initialize, call, stop.
    async fn call_in_fresh_process(
        &self,
        request: CallToolRequestParams,
    ) -> anyhow::Result<CallToolResult> {
        let (program, args) = &*self.command;
        let mut command = Command::new(program);
        command.args(args);
        let (process, _) = TokioChildProcess::builder(command)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let client = ().serve(process).await.context("initializing")?;
        let result = client.peer().call_tool(request).await;
        // Closes its stdin and waits for it to exit (SIGTERM, then SIGKILL,
        // if it lingers), before answering.
        client
            .cancel()
            .await
            .context("stopping the server process")?;
        Ok(result?)
    }
}

impl ServerHandler for PerRequest {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.call_in_fresh_process(request).await {
            Ok(result) => Ok(result.into()),
            Err(e) => Err(ErrorData::internal_error(format!("{e:#}"), None)),
        }
    }
}

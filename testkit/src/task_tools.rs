//! The MCP server of the task tests and the `tasks_server` example: tools
//! that take a while, ask for input, and tell who ran them. An ordinary rmcp
//! `ServerHandler`: it knows nothing of tasks or queues; the queue server
//! makes the tasks.
//!
//! Tools: `work(ms)` (works in 100 ms steps, reporting progress, stops when
//! cancelled; its result names the process that finished it), `greet()`
//! (asks the caller for a name with an `input_required` result, then greets
//! it) and `echo(text)`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rmcp::handler::server::tool::InputResponses;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, InputRequest, InputRequests,
    InputRequiredResult, ProgressNotificationParam, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What the handlers did, shared by every instance a factory makes.
#[derive(Debug, Default)]
pub struct TaskToolStats {
    /// `work` calls started.
    pub works_started: AtomicUsize,
    /// `work` calls that ran to the end.
    pub works_completed: AtomicUsize,
    /// When a `work` call last saw its cancellation.
    pub cancelled_at: Mutex<Option<Instant>>,
    /// `greet` calls (each round counts).
    pub greet_rounds: AtomicUsize,
}

/// Arguments of `work`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkArgs {
    /// How long to work, in milliseconds.
    pub ms: u64,
}

/// Arguments of `echo`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// The server: see the module documentation.
#[derive(Clone)]
pub struct TaskTools {
    stats: Arc<TaskToolStats>,
    #[expect(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

impl TaskTools {
    /// A factory for `QueueServer::build`, every instance sharing `stats`.
    pub fn factory(stats: Arc<TaskToolStats>) -> impl Fn() -> TaskTools + Send + Sync + 'static {
        let tool_router = Self::tool_router();
        move || TaskTools {
            stats: stats.clone(),
            tool_router: tool_router.clone(),
        }
    }
}

/// The step `work` reports progress at.
const STEP: Duration = Duration::from_millis(100);

#[tool_router]
impl TaskTools {
    #[tool(
        description = "Works for `ms` milliseconds in 100 ms steps, reporting progress; stops when cancelled"
    )]
    async fn work(
        &self,
        Parameters(args): Parameters<WorkArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
    ) -> Result<String, ErrorData> {
        self.stats.works_started.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let started = Instant::now();
        let total = Duration::from_millis(args.ms);
        let mut reported = Duration::ZERO;
        while started.elapsed() < total {
            tokio::select! {
                () = tokio::time::sleep(STEP.min(total.saturating_sub(started.elapsed()))) => {}
                () = cancel.cancelled() => {
                    if let Ok(mut at) = self.stats.cancelled_at.lock() {
                        *at = Some(Instant::now());
                    }
                    return Err(ErrorData::internal_error("cancelled", None));
                }
            }
            // A report a second is plenty for a status line.
            if started.elapsed() >= reported + Duration::from_secs(1)
                && let Some(token) = meta.get_progress_token()
            {
                reported = started.elapsed();
                let done = reported.as_millis() as f64;
                let progress = ProgressNotificationParam::new(token, done)
                    .with_total(args.ms as f64)
                    .with_message(format!("pid {pid}: {} of {} ms", done as u64, args.ms));
                let _ = peer.notify_progress(progress).await;
            }
        }
        self.stats.works_completed.fetch_add(1, Ordering::SeqCst);
        Ok(format!("worked {} ms in pid {pid}", args.ms))
    }

    #[tool(description = "Asks for a name (input_required), then greets it")]
    async fn greet(
        &self,
        InputResponses(responses): InputResponses,
    ) -> Result<CallToolResponse, ErrorData> {
        self.stats.greet_rounds.fetch_add(1, Ordering::SeqCst);
        let name = responses
            .as_ref()
            .and_then(|responses| responses.get("name"))
            .and_then(|answer| answer.get("content"))
            .and_then(|content| content.get("name"))
            .and_then(|name| name.as_str());
        if let Some(name) = name {
            return Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "Hello, {name}!"
            ))])
            .into());
        }
        let ask: InputRequest = serde_json::from_value(json!({
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": "What is your name?",
                "requestedSchema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"]
                }
            }
        }))
        .map_err(|e| ErrorData::internal_error(format!("elicitation request: {e}"), None))?;
        let asked = InputRequests::from([("name".to_owned(), ask)]);
        Ok(InputRequiredResult::new(Some(asked), Some("asked-name".to_owned())).into())
    }

    #[tool(description = "Returns its input text")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }
}

#[tool_handler]
impl ServerHandler for TaskTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("asyncmcp task demo: work, greet, echo")
    }
}

//! The demo MCP server used by the examples and the tests: an ordinary rmcp
//! `ServerHandler` that knows nothing of queues.
//!
//! Tools: `echo(text)`, `add(a, b)`, `sleep(ms)` (reports progress, stops
//! when cancelled), `fail(message)` (an `isError` result),
//! `hash(data, rounds)` (CPU work, run off the async runtime) and `roots`
//! (a server-to-client request, which queues do not carry).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolResult, ContentBlock, ProgressNotificationParam, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Counters shared by every instance the factory makes, so a test can see
/// what handlers did on the server side.
#[derive(Debug, Default)]
pub struct DemoStats {
    /// `sleep` calls that ran to the end.
    pub sleeps_completed: AtomicUsize,
    /// `sleep` calls stopped by cancellation.
    pub sleeps_cancelled: AtomicUsize,
    /// Every tool call started.
    pub calls: AtomicUsize,
}

/// Arguments of `echo`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `add`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// First addend.
    pub a: f64,
    /// Second addend.
    pub b: f64,
}

/// Arguments of `sleep`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}

/// Arguments of `fail`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FailArgs {
    /// The error text of the result.
    pub message: String,
}

/// Arguments of `hash`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct HashArgs {
    /// The data to hash.
    pub data: String,
    /// How many times to apply SHA-256 (at most 10 000 000).
    pub rounds: u32,
}

/// The demo server.
#[derive(Clone)]
pub struct DemoServer {
    stats: Arc<DemoStats>,
    #[expect(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

impl DemoServer {
    /// A factory for `QueueServer::build`: a fresh server per request, all
    /// sharing one set of counters.
    ///
    /// The tool router is built once and cloned: building it validates every
    /// tool's schema and name, which cost more than the rest of a call.
    pub fn factory(stats: Arc<DemoStats>) -> impl Fn() -> DemoServer + Send + Sync + 'static {
        let tool_router = Self::tool_router();
        move || DemoServer {
            stats: stats.clone(),
            tool_router: tool_router.clone(),
        }
    }
}

#[tool_router]
impl DemoServer {
    #[tool(description = "Returns its input text")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        args.text
    }

    #[tool(description = "Adds two numbers")]
    async fn add(&self, Parameters(args): Parameters<AddArgs>) -> String {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let sum = args.a + args.b;
        if sum.fract() == 0.0 && sum.abs() < 1e15 {
            format!("{}", sum as i64)
        } else {
            sum.to_string()
        }
    }

    #[tool(description = "Sleeps for `ms` milliseconds, reporting progress; stops when cancelled")]
    async fn sleep(
        &self,
        Parameters(args): Parameters<SleepArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
    ) -> Result<String, ErrorData> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        const STEPS: u64 = 4;
        let step = Duration::from_millis(args.ms / STEPS);
        for done in 1..=STEPS {
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = cancel.cancelled() => {
                    self.stats.sleeps_cancelled.fetch_add(1, Ordering::Relaxed);
                    return Err(ErrorData::internal_error("cancelled", None));
                }
            }
            if let Some(token) = meta.get_progress_token() {
                let progress = ProgressNotificationParam::new(token, done as f64)
                    .with_total(STEPS as f64)
                    .with_message(format!(
                        "slept {} of {} ms",
                        step.as_millis() as u64 * done,
                        args.ms
                    ));
                let _ = peer.notify_progress(progress).await;
            }
        }
        self.stats.sleeps_completed.fetch_add(1, Ordering::Relaxed);
        Ok(format!("slept {} ms", args.ms))
    }

    #[tool(description = "Returns an error result (isError) with the given message")]
    async fn fail(&self, Parameters(args): Parameters<FailArgs>) -> CallToolResult {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        CallToolResult::error(vec![ContentBlock::text(args.message)])
    }

    #[tool(
        description = "Applies SHA-256 `rounds` times to `data` (CPU work off the async runtime)"
    )]
    async fn hash(&self, Parameters(args): Parameters<HashArgs>) -> Result<String, ErrorData> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if args.rounds > 10_000_000 {
            return Err(ErrorData::invalid_params(
                "rounds must be at most 10000000",
                None,
            ));
        }
        tokio::task::spawn_blocking(move || {
            let mut digest = Sha256::digest(args.data.as_bytes());
            for _ in 1..args.rounds {
                digest = Sha256::digest(digest);
            }
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .await
        .map_err(|_| ErrorData::internal_error("hash worker failed", None))
    }

    #[tool(
        description = "Asks the client for its roots (a server-to-client request); returns how many, or the error as an isError result"
    )]
    async fn roots(&self, peer: Peer<RoleServer>) -> CallToolResult {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        // Roots are deprecated after the 2025 protocol versions, whose
        // sessions this tool exercises.
        #[allow(deprecated)]
        let listed = peer.list_roots().await.map(|listed| listed.roots.len());
        match listed {
            Ok(count) => {
                CallToolResult::success(vec![ContentBlock::text(format!("{count} roots"))])
            }
            // Over queues the request is refused at once: a tool must
            // handle that as it would a client without the capability.
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        }
    }
}

#[tool_handler]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("asyncmcp demo server: echo, add, sleep, fail, hash, roots")
    }
}

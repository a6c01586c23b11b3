//! What the queue server examples share: their command-line settings and
//! running until Ctrl-C or SIGTERM.

use std::time::Duration;

use asyncmcp::server::{QueueServer, QueueServerBuilder, ServiceFactory};
use asyncmcp::wire::session::SessionKeys;
use tokio_util::sync::CancellationToken;

/// Server settings common to every transport.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Requests handled at once.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Concurrent long polls.
    #[arg(long, default_value_t = 4)]
    pub pollers: usize,
    /// Cancel calls running longer than this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Also allow replies to addresses starting with this prefix (repeatable).
    /// Queues beside the request queue and topics of its account are always
    /// allowed.
    #[arg(long)]
    pub allow_reply_prefix: Vec<String>,
    /// Session key shared by all replicas (at least 32 bytes). Without it,
    /// a random per-process key is used.
    #[arg(long, env = "ASYNCMCP_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,
}

impl ServerArgs {
    /// Applies these settings to `builder`.
    pub fn apply(self, mut builder: QueueServerBuilder) -> anyhow::Result<QueueServerBuilder> {
        builder = builder
            .max_in_flight(self.max_in_flight)
            .pollers(self.pollers);
        if let Some(ms) = self.timeout_ms {
            builder = builder.request_timeout(Duration::from_millis(ms));
        }
        for prefix in self.allow_reply_prefix {
            builder = builder.allow_reply_prefix(prefix);
        }
        if let Some(key) = self.session_key {
            builder = builder.session_keys(SessionKeys::new(key.into_bytes(), None)?);
        }
        Ok(builder)
    }
}

/// Runs `server`, printing `READY <what>` on stdout once it polls, until
/// Ctrl-C or SIGTERM; then shuts it down gracefully: it stops receiving,
/// finishes the calls in flight within the grace period and releases the
/// rest to other replicas.
pub async fn serve_until_signal<F: ServiceFactory>(
    server: QueueServer<F>,
    what: &str,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = server.spawn(shutdown.clone());
    println!("READY serving {what}");
    wait_for_signal().await;
    shutdown.cancel();
    running.await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

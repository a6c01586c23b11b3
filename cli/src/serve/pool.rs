//! The child processes of `serve`: started once, restarted with backoff.
//!
//! Each slot of the pool runs one child at a time under a supervisor task:
//! start it, initialize it (the newest protocol version it speaks:
//! `server/discover` first, `initialize` when it is older), publish its
//! connection, and when it exits (crashed, killed, closed its stdout),
//! withdraw the connection and start another after a backoff that doubles
//! from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`] and starts over once a child
//! has run for [`HEALTHY_AFTER`]. Requests the dead child held fail in the
//! forwarder, which gives them back to the queue.
//!
//! A request takes the least busy live child ([`ChildPool::lease`]); while
//! none is up it waits for one up to [`WAIT_FOR_CHILD`], and is then given
//! back to the queue.

use std::ops::Deref;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::TokioChildProcess;
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bridge::{Connection, Downstream, DownstreamClient, LogSink, Unavailable};

/// The first wait before restarting a child that exited.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between restarts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long resets the backoff when it exits.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long a request waits for a child to be up before it is given back.
pub(crate) const WAIT_FOR_CHILD: Duration = Duration::from_secs(10);

/// The command a child runs.
#[derive(Debug, Clone)]
pub(crate) struct ChildCommand {
    /// The program.
    pub(crate) program: String,
    /// Its arguments.
    pub(crate) args: Vec<String>,
}

impl ChildCommand {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command
    }
}

/// One child: its live connection (none while it restarts) and the number
/// of requests it holds.
#[derive(Debug)]
struct Slot {
    index: usize,
    live: watch::Sender<Option<Arc<Connection>>>,
    busy: AtomicUsize,
}

/// The pool of children; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ChildPool {
    slots: Arc<Vec<Arc<Slot>>>,
}

/// A child held for one request.
#[derive(Debug)]
pub(crate) struct Lease {
    slot: Arc<Slot>,
    connection: Arc<Connection>,
}

impl Deref for Lease {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.slot.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ChildPool {
    /// Starts `children` supervisors running `command`, until `stop`.
    pub(crate) fn start(
        command: ChildCommand,
        children: usize,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinSet<()>) {
        let mut supervisors = tokio::task::JoinSet::new();
        let slots: Vec<Arc<Slot>> = (0..children.max(1))
            .map(|index| {
                Arc::new(Slot {
                    index,
                    live: watch::Sender::new(None),
                    busy: AtomicUsize::new(0),
                })
            })
            .collect();
        for slot in &slots {
            supervisors.spawn(supervise(slot.clone(), command.clone(), stop.clone()));
        }
        (
            Self {
                slots: Arc::new(slots),
            },
            supervisors,
        )
    }

    /// Waits until at least one child is up, or `timeout` passes.
    pub(crate) async fn ready(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait_for_live())
            .await
            .is_ok()
    }

    async fn wait_for_live(&self) {
        let mut watchers: Vec<_> = self
            .slots
            .iter()
            .map(|slot| slot.live.subscribe())
            .collect();
        loop {
            if watchers.iter().any(|watcher| watcher.borrow().is_some()) {
                return;
            }
            let changes = watchers
                .iter_mut()
                .map(|watcher| Box::pin(watcher.changed()));
            // Every supervisor holds its sender for the pool's life, so a
            // change (not a closed channel) ends this wait.
            let _ = futures_select_all(changes).await;
        }
    }

    /// The least busy live child.
    fn least_busy(&self) -> Option<Lease> {
        let (slot, connection) = self
            .slots
            .iter()
            .filter_map(|slot| Some((slot, slot.live.borrow().clone()?)))
            .min_by_key(|(slot, _)| slot.busy.load(Ordering::Relaxed))?;
        slot.busy.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            slot: slot.clone(),
            connection,
        })
    }
}

/// The first of `futures` to complete.
async fn futures_select_all<F: std::future::Future + Unpin>(
    futures: impl Iterator<Item = F>,
) -> F::Output {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for future in &mut futures {
            if let std::task::Poll::Ready(output) = std::pin::Pin::new(future).poll(cx) {
                return std::task::Poll::Ready(output);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl Downstream for ChildPool {
    type Lease = Lease;

    fn closed(&self) -> &'static str {
        "the server process exited before it answered"
    }

    async fn lease(&self) -> Result<Lease, Unavailable> {
        if let Some(lease) = self.least_busy() {
            return Ok(lease);
        }
        if !self.ready(WAIT_FOR_CHILD).await {
            return Err(Unavailable(format!(
                "no server process is running (none came up within {} s)",
                WAIT_FOR_CHILD.as_secs()
            )));
        }
        self.least_busy()
            .ok_or_else(|| Unavailable("the server process exited".to_owned()))
    }
}

/// Runs child after child in `slot` until `stop`.
async fn supervise(slot: Arc<Slot>, command: ChildCommand, stop: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    let index = slot.index;
    while !stop.is_cancelled() {
        let started = tokio::time::Instant::now();
        match run_child(&slot, &command, &stop).await {
            Ok(()) if stop.is_cancelled() => break,
            Ok(()) => tracing::warn!(child = index, "server process exited; restarting it"),
            Err(error) => tracing::error!(child = index, %error, "server process failed to start"),
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
        }
        tracing::info!(
            child = index,
            ?backoff,
            "waiting before restarting the server process"
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a child could not be used.
#[derive(Debug, thiserror::Error)]
enum ChildError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// It did not complete the MCP handshake.
    #[error("{program} did not complete the MCP handshake: {source}")]
    Handshake {
        program: String,
        source: Box<rmcp::service::ClientInitializeError>,
    },
}

/// Starts one child, publishes its connection while it lives, and returns
/// once it has exited (or `stop` ended it).
async fn run_child(
    slot: &Slot,
    command: &ChildCommand,
    stop: &CancellationToken,
) -> Result<(), ChildError> {
    let program = command.program.clone();
    let (process, _) = TokioChildProcess::builder(command.command())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| ChildError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pid = process.id();
    let handler = DownstreamClient::new("asyncmcp serve", LogSink::Stderr);
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::LATEST],
        legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
    };
    let running = tokio::select! {
        running = handler.clone().serve_with_lifecycle(handler.observe(process), lifecycle) => {
            running.map_err(|source| ChildError::Handshake { program: program.clone(), source: Box::new(source) })?
        }
        () = stop.cancelled() => return Ok(()),
    };
    let Some(connection) = handler.connection(running.peer().clone()) else {
        return Err(ChildError::Handshake {
            program,
            source: Box::new(rmcp::service::ClientInitializeError::ConnectionClosed(
                "no server info after the handshake".to_owned(),
            )),
        });
    };
    tracing::info!(
        child = slot.index,
        ?pid,
        server = %connection.info.server_info.name,
        protocol = %connection.info.protocol_version,
        "server process ready"
    );
    slot.live.send_replace(Some(Arc::new(connection)));
    let stopper = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let ended = tokio::select! {
        ended = &mut waiting => ended,
        () = stop.cancelled() => {
            slot.live.send_replace(None);
            // Ends the connection: the child's stdin closes, and the
            // process is reaped (SIGTERM, then SIGKILL, if it lingers).
            stopper.cancel();
            waiting.await
        }
    };
    slot.live.send_replace(None);
    tracing::debug!(child = slot.index, ?ended, "server connection ended");
    Ok(())
}

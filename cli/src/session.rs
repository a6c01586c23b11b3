//! One MCP client session with a queue-backed server, for a command that
//! makes its requests and exits: connect, `initialize`, the work, close.
//!
//! What it promises: the deadline (`--timeout`) and SIGINT or SIGTERM stop
//! whatever is under way, and what the session created (its reply queue; over
//! SNS also its reply topic and subscription) is removed before the command
//! exits, whether it succeeded, failed or was stopped:
//!
//! * while connecting, a stop waits (a little) for the connection under way
//!   to be made, then closes it: dropped half-way, a queue just created would
//!   be left behind;
//! * when `initialize` fails, rmcp drops the transport without closing it
//!   (and a dropped transport only starts its clean-up in the background):
//!   [`Reclaim`] hands it back here to be closed;
//! * clean-up is bounded ([`CLEANUP_LIMIT`]), and a second signal abandons
//!   it, saying what is left.

use std::pin::Pin;
use std::time::Duration;

use asyncmcp::QueueClientTransport;
use asyncmcp::client::ClientError;
use asyncmcp::queue::QueueError;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{
    ClientInitializeError, ClientLifecycleMode, RunningService, ServiceError,
    serve_client_with_lifecycle,
};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, Peer, RoleClient};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until, timeout};

use crate::bridge::Observer;
use crate::connect::Target;
use crate::exit::{Done, Failure};
use crate::signals::{Signal, Signals};

/// How long removing what a session created may take before the command
/// gives up and says what it left.
const CLEANUP_LIMIT: Duration = Duration::from_secs(20);
/// How long a connection under way when the command is stopped may take to
/// be made, so that it can be closed (and what it created removed).
const CONNECT_GRACE: Duration = Duration::from_secs(10);

/// Why a session stopped before its work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A signal.
    Signal(Signal),
    /// The deadline passed.
    Deadline,
}

/// An initialized MCP client session; [`finish`](Self::finish) it.
pub(crate) struct Session<H: ClientHandler> {
    client: RunningService<RoleClient, H>,
    signals: Signals,
    deadline: Instant,
    timeout: Duration,
    reply_queue: String,
    /// The transport, should the service's task end without closing it.
    returned: oneshot::Receiver<QueueClientTransport>,
}

impl<H: ClientHandler> Session<H> {
    /// Connects to `target` and initializes (the `initialize` handshake),
    /// within the deadline (`--timeout`, which starts now) and until a
    /// signal.
    pub(crate) async fn open(target: Target, handler: H) -> Result<Self, Failure> {
        Self::open_with(target, handler, ClientLifecycleMode::Initialize).await
    }

    /// As [`open`](Self::open), starting the session as `lifecycle` says
    /// (e.g. `server/discover` first, for MCP 2026-07-28).
    pub(crate) async fn open_with(
        target: Target,
        handler: H,
        lifecycle: ClientLifecycleMode,
    ) -> Result<Self, Failure> {
        Self::start(target, handler, lifecycle, None).await
    }

    /// As [`open`](Self::open), with `observer` shown every message the
    /// transport receives, in the order it receives them (the bridge counts
    /// progress so; see [`DownstreamClient::observer`]).
    ///
    /// [`DownstreamClient::observer`]: crate::bridge::DownstreamClient::observer
    pub(crate) async fn open_observed(
        target: Target,
        handler: H,
        observer: Observer,
    ) -> Result<Self, Failure> {
        Self::start(
            target,
            handler,
            ClientLifecycleMode::Initialize,
            Some(observer),
        )
        .await
    }

    async fn start(
        target: Target,
        handler: H,
        lifecycle: ClientLifecycleMode,
        observer: Option<Observer>,
    ) -> Result<Self, Failure> {
        let mut signals = Signals::install().map_err(Failure::other)?;
        let timeout = target.timeout();
        let deadline = Instant::now() + timeout;
        let as_failure = |stop| failure(stop, timeout);
        let transport = connect(target.connect(), &mut signals, deadline)
            .await
            .map_err(|stopped| match stopped {
                Connect::Failed(error) => Failure::other(
                    anyhow::Error::new(error).context("cannot connect to the server"),
                ),
                Connect::Stopped(stop) => as_failure(stop),
            })?;
        let reply_queue = transport.reply_queue().to_owned();
        tracing::info!(
            reply_queue,
            reply_address = transport.reply_address(),
            client_id = transport.client_id(),
            "connected"
        );
        let (transport, mut returned) = Reclaim::new(transport, observer);
        let started = tokio::select! {
            started = serve_client_with_lifecycle(handler, transport, lifecycle) => {
                started.map_err(initialize_failure)
            }
            stop = stopped(&mut signals, deadline) => Err(as_failure(stop)),
        };
        match started {
            Ok(client) => Ok(Self {
                client,
                signals,
                deadline,
                timeout,
                reply_queue,
                returned,
            }),
            Err(failure) => {
                // The transport was dropped unclosed, and came back here.
                if let Ok(transport) = returned.try_recv() {
                    clean_up(close(transport), &mut signals, &reply_queue).await;
                }
                Err(failure)
            }
        }
    }

    /// The server, to send requests to.
    pub(crate) fn peer(&self) -> Peer<RoleClient> {
        self.client.peer().clone()
    }

    /// Runs `work` until it is done, the deadline passes or a signal comes.
    pub(crate) async fn run<F: Future>(&mut self, work: F) -> Result<F::Output, Stop> {
        tokio::select! {
            output = work => Ok(output),
            stop = stopped(&mut self.signals, self.deadline) => Err(stop),
        }
    }

    /// Runs `work` until it is done or a signal comes, whatever the
    /// deadline (a proxy serves for as long as its caller stays).
    pub(crate) async fn until_signal<F: Future>(&mut self, work: F) -> Result<F::Output, Signal> {
        tokio::select! {
            output = work => Ok(output),
            signal = self.signals.recv() => Err(signal),
        }
    }

    /// The failure a [`Stop`] of this session makes.
    pub(crate) fn failure(&self, stop: Stop) -> Failure {
        failure(stop, self.timeout)
    }

    /// Closes the session, removing what it created, and gives `outcome`,
    /// or the signal that cut the clean-up short.
    pub(crate) async fn finish(mut self, outcome: Result<Done, Failure>) -> Result<Done, Failure> {
        let client = &mut self.client;
        let interrupted = clean_up(
            async move {
                if let Err(error) = client.close().await {
                    tracing::warn!(%error, "the MCP client task failed");
                }
            },
            &mut self.signals,
            &self.reply_queue,
        )
        .await;
        // Closed by the service, the transport does not come back; should
        // its task have ended otherwise, it is closed here.
        let interrupted = match (interrupted, self.returned.try_recv()) {
            (None, Ok(transport)) => {
                clean_up(close(transport), &mut self.signals, &self.reply_queue).await
            }
            (interrupted, _) => interrupted,
        };
        match (interrupted, outcome) {
            (Some(signal), Ok(_)) => Err(Failure::Interrupted(signal)),
            (_, outcome) => outcome,
        }
    }
}

/// The failure for `stop`, under the deadline `--timeout`.
fn failure(stop: Stop, timeout: Duration) -> Failure {
    match stop {
        Stop::Signal(signal) => Failure::Interrupted(signal),
        Stop::Deadline => Failure::TimedOut(timeout),
    }
}

/// The failure of a request `method` the service could not complete.
pub(crate) fn request_failure(method: &'static str, error: ServiceError) -> Failure {
    match error {
        ServiceError::McpError(error) => Failure::JsonRpc { method, error },
        ServiceError::TransportSend(error) => Failure::other(anyhow::anyhow!(
            "{method} failed: cannot send it: {}",
            error.error
        )),
        error => Failure::other(anyhow::Error::new(error).context(format!("{method} failed"))),
    }
}

/// The failure of `initialize`.
pub(crate) fn initialize_failure(error: ClientInitializeError) -> Failure {
    match error {
        ClientInitializeError::JsonRpcError(error) => Failure::JsonRpc {
            method: "initialize",
            error,
        },
        // Without rmcp's wording, which names the transport's type.
        ClientInitializeError::TransportError { error, context } => Failure::other(
            anyhow::anyhow!("initialize failed: cannot {context}: {}", error.error),
        ),
        error => Failure::other(anyhow::Error::new(error).context("initialize failed")),
    }
}

/// The next stop: a signal, or the deadline.
async fn stopped(signals: &mut Signals, deadline: Instant) -> Stop {
    tokio::select! {
        signal = signals.recv() => Stop::Signal(signal),
        () = sleep_until(deadline) => Stop::Deadline,
    }
}

/// Why no connection was made.
enum Connect {
    Failed(ClientError),
    Stopped(Stop),
}

/// Makes the connection `connecting`, until a stop; a connection under way
/// at the stop is let finish (within [`CONNECT_GRACE`], until a second
/// signal) and closed, so that nothing it created is left.
async fn connect(
    connecting: impl Future<Output = Result<QueueClientTransport, ClientError>>,
    signals: &mut Signals,
    deadline: Instant,
) -> Result<QueueClientTransport, Connect> {
    tokio::pin!(connecting);
    let stop = tokio::select! {
        connected = &mut connecting => return connected.map_err(Connect::Failed),
        stop = stopped(signals, deadline) => stop,
    };
    tracing::info!("stopping: letting the connection under way finish, to remove what it made");
    tokio::select! {
        connected = timeout(CONNECT_GRACE, &mut connecting) => match connected {
            Ok(Ok(transport)) => {
                let reply_queue = transport.reply_queue().to_owned();
                clean_up(close(transport), signals, &reply_queue).await;
            }
            // A failed connect removes what it made itself.
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                "the connection under way did not finish within {CONNECT_GRACE:?}: a reply \
                 queue named asyncmcp-reply-... may be left behind"
            ),
        },
        signal = signals.recv() => tracing::warn!(
            "{signal} again: a reply queue named asyncmcp-reply-... may be left behind"
        ),
    }
    Err(Connect::Stopped(stop))
}

/// Runs `closing` (a close that removes what the session made, reporting
/// its own errors) within [`CLEANUP_LIMIT`]; a signal abandons it and is
/// returned.
async fn clean_up(
    closing: impl Future<Output = ()>,
    signals: &mut Signals,
    reply_queue: &str,
) -> Option<Signal> {
    tokio::select! {
        closed = timeout(CLEANUP_LIMIT, closing) => {
            if closed.is_err() {
                tracing::warn!(
                    reply_queue,
                    "closing did not finish within {CLEANUP_LIMIT:?}: the reply queue may be left behind"
                );
            }
            None
        }
        signal = signals.recv() => {
            tracing::warn!(reply_queue, "{signal} again: leaving the reply queue behind");
            Some(signal)
        }
    }
}

/// Closes `transport`, reporting a failure.
async fn close(mut transport: QueueClientTransport) {
    if let Err(error) = transport.close().await {
        tracing::warn!(%error, "closing the transport failed");
    }
}

/// A [`QueueClientTransport`] that, dropped without being closed, is handed
/// back through a channel to be closed, instead of cleaning up on its own in
/// the background (where the end of the process would cut it short).
struct Reclaim {
    inner: Option<QueueClientTransport>,
    back: Option<oneshot::Sender<QueueClientTransport>>,
    /// Shown every message received.
    observer: Option<Observer>,
}

impl Reclaim {
    fn new(
        transport: QueueClientTransport,
        observer: Option<Observer>,
    ) -> (Self, oneshot::Receiver<QueueClientTransport>) {
        let (back, returned) = oneshot::channel();
        (
            Self {
                inner: Some(transport),
                back: Some(back),
                observer,
            },
            returned,
        )
    }
}

impl Transport<RoleClient> for Reclaim {
    type Error = ClientError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let sending: Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>> =
            match &mut self.inner {
                Some(transport) => Box::pin(transport.send(item)),
                None => Box::pin(std::future::ready(Err(ClientError::Queue(
                    QueueError::Closed,
                )))),
            };
        sending
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.as_mut()?.receive().await?;
        if let Some(observer) = &self.observer {
            observer(&message);
        }
        Some(message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        match self.inner.take() {
            Some(mut transport) => transport.close().await,
            None => Ok(()),
        }
    }
}

impl Drop for Reclaim {
    fn drop(&mut self) {
        if let (Some(transport), Some(back)) = (self.inner.take(), self.back.take()) {
            // No one to take it: it cleans up in the background.
            let _ = back.send(transport);
        }
    }
}

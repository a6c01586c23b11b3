//! [`FaultProxy`]: a TCP proxy in front of LocalStack that can simulate a
//! network outage.
//!
//! LocalStack in host mode loses every queue when it restarts, so an outage
//! of the broker is simulated between the processes and LocalStack instead:
//! point a client (or a child process, through `AWS_ENDPOINT_URL`) at
//! [`FaultProxy::endpoint`], then [`cut`](FaultProxy::cut) (connections are
//! closed: calls fail at once) or [`stall`](FaultProxy::stall) (connections
//! are accepted and never answered: calls hang) and
//! [`restore`](FaultProxy::restore) the line.

use std::fmt::Display;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The line's state, shared by the accept loop and every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Line {
    /// Incremented by every [`FaultProxy::cut`]: a connection opened under an
    /// older generation is closed.
    generation: u64,
    /// Whether the line is down (new connections are dropped at once).
    cut: bool,
    /// Whether the line is blackholed: connections are accepted and kept
    /// open, but nothing is passed on either way until it is restored.
    stalled: bool,
}

/// A TCP proxy on `127.0.0.1` to one upstream address, whose line can be cut
/// and restored. Dropping it stops it and closes every connection.
pub struct FaultProxy {
    /// Where the proxy listens.
    local: SocketAddr,
    /// The line's state; connections watch it.
    line: watch::Sender<Line>,
    /// Cancelled on drop: stops the accept loop and every connection.
    stop: CancellationToken,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`, or a `SocketAddr`),
    /// listening on an ephemeral port of `127.0.0.1`. The upstream name is
    /// resolved on every connection.
    pub async fn start(upstream: impl Display) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let (line, _) = watch::channel(Line::default());
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            upstream.to_string(),
            line.clone(),
            stop.clone(),
        ));
        Ok(Self { local, line, stop })
    }

    /// Starts a proxy to the HTTP endpoint `endpoint` (e.g.
    /// `http://localhost:4566`, as in [`LocalStack::endpoint`](super::LocalStack)).
    pub async fn in_front_of(endpoint: &str) -> io::Result<Self> {
        Self::start(authority(endpoint)?).await
    }

    /// The proxy's URL, `http://127.0.0.1:<port>`, to use as an AWS endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local)
    }

    /// Cuts the line: closes every open connection at once (in-flight long
    /// polls included) and drops new ones as soon as they are accepted,
    /// until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.line.send_modify(|line| {
            line.generation += 1;
            line.cut = true;
        });
    }

    /// Stalls the line, as a blackholed network: new connections are
    /// accepted and never answered, and open ones pass nothing on either
    /// way (what is sent is held, not lost), until [`restore`](Self::restore).
    /// Unlike a cut, nothing fails: calls hang until their own timeouts.
    pub fn stall(&self) {
        self.line.send_modify(|line| line.stalled = true);
    }

    /// Restores the line: new connections are proxied again, and what a
    /// stall held goes on its way.
    pub fn restore(&self) {
        self.line.send_modify(|line| {
            line.cut = false;
            line.stalled = false;
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `host:port` of an `http://` endpoint (port 80 when it names none).
fn authority(endpoint: &str) -> io::Result<String> {
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("only http:// endpoints can be proxied, got {endpoint}"),
        )
    })?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

/// Accepts connections until `stop`, proxying each one to `upstream` while
/// the line is up and dropping it at once while it is cut.
async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    line: watch::Sender<Line>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let downstream = match accepted {
            Ok((downstream, _)) => downstream,
            Err(error) => {
                // E.g. too many open files: pause rather than spin.
                eprintln!("fault proxy: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let watcher = line.subscribe();
        // Read once, so that a cut from now on closes this connection.
        let state = *watcher.borrow();
        if state.cut {
            drop(downstream);
            continue;
        }
        tokio::spawn(proxy_connection(
            downstream,
            upstream.clone(),
            state.generation,
            watcher,
            stop.clone(),
        ));
    }
}

/// Copies one connection, accepted under `generation`, both ways until
/// either side closes it, the line is cut, or the proxy stops; then closes
/// both sides.
async fn proxy_connection(
    downstream: TcpStream,
    upstream: String,
    generation: u64,
    mut line: watch::Receiver<Line>,
    stop: CancellationToken,
) {
    let flowing = line.clone();
    // Resolves once the line has been cut since this connection was accepted
    // (checking the current state first), or the proxy is gone.
    let cut = async {
        let _ = line.wait_for(|line| line.generation != generation).await;
    };
    let session = async {
        // Accepted during a stall: not answered until it ends.
        let mut waiting = flowing.clone();
        if waiting.wait_for(|line| !line.stalled).await.is_err() {
            return;
        }
        let upstream = match TcpStream::connect(&upstream).await {
            Ok(upstream) => upstream,
            Err(error) => {
                eprintln!("fault proxy: cannot reach {upstream}: {error}");
                return;
            }
        };
        let (down_read, down_write) = downstream.into_split();
        let (up_read, up_write) = upstream.into_split();
        // Either side closing, or an I/O error, ends the connection; both
        // are what a client of a real network sees, so neither is reported.
        tokio::select! {
            () = pump(down_read, up_write, flowing.clone()) => {}
            () = pump(up_read, down_write, flowing) => {}
        }
    };
    tokio::select! {
        () = session => {}
        () = cut => {}
        () = stop.cancelled() => {}
    }
}

/// Copies `from` to `to` until either ends, holding what it reads while the
/// line is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut line: watch::Receiver<Line>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if line.wait_for(|line| !line.stalled).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        // Read before the stall began, passed on only after it ends.
        if line.wait_for(|line| !line.stalled).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

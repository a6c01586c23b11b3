//! The stdio proxy: one MCP client on stdin and stdout.

use std::sync::{Arc, OnceLock};

use rmcp::service::ServerInitializeError;
use rmcp::{Peer, RoleServer, ServiceExt};

use super::link::Link;
use super::{Server, ServerConnection, open};
use crate::bridge::{Forwarder, LogSink};
use crate::exit::{Done, Failure};

/// Connects to the server, then serves the client on stdio until stdin
/// closes, a signal comes or the server connection ends; closes the server
/// connection (deleting its reply queue, ending its webhook session) either
/// way.
pub(super) async fn run(server: Server<'_>) -> Result<Done, Failure> {
    let caller = Arc::new(OnceLock::new());
    let (mut link, downstream) = open(server, LogSink::Caller(caller.clone())).await?;
    eprintln!("asyncmcp proxy: ready: stdio");
    let outcome = serve(&mut link, downstream, &caller).await;
    link.finish(outcome).await
}

/// How the stdio session ended.
enum Ended {
    /// The client closed stdin (or the connection failed).
    Caller,
    /// The server connection ended.
    Server,
}

async fn serve(
    session: &mut Link,
    downstream: ServerConnection,
    caller: &OnceLock<Peer<RoleServer>>,
) -> Result<Done, Failure> {
    let forwarder = Forwarder::new(downstream.clone());
    let running = match session
        .until_signal(forwarder.serve(rmcp::transport::stdio()))
        .await
    {
        Err(signal) => {
            tracing::info!(%signal, "stopped before the client initialized");
            return Ok(Done::Success);
        }
        Ok(Err(ServerInitializeError::ConnectionClosed(reason))) => {
            tracing::info!(%reason, "the client left before initializing");
            return Ok(Done::Success);
        }
        Ok(Err(error)) => {
            return Err(Failure::other(
                anyhow::Error::new(error).context("the client's handshake failed"),
            ));
        }
        Ok(Ok(running)) => running,
    };
    // From now on the server's log messages go to the client.
    let _ = caller.set(running.peer().clone());
    let stopper = running.cancellation_token();
    let ended = session
        .until_signal(async {
            tokio::select! {
                quit = running.waiting() => {
                    tracing::info!(?quit, "the client's connection ended");
                    Ended::Caller
                }
                () = downstream.closed() => Ended::Server,
            }
        })
        .await;
    match ended {
        Ok(Ended::Caller) => Ok(Done::Success),
        Err(signal) => {
            tracing::info!(%signal, "stopping");
            stopper.cancel();
            Ok(Done::Success)
        }
        Ok(Ended::Server) => {
            stopper.cancel();
            Err(Failure::other(anyhow::anyhow!(
                "the connection to the server has ended"
            )))
        }
    }
}

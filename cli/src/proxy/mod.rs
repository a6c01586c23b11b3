//! `asyncmcp proxy`: a queue-backed MCP server as a local one, for MCP
//! clients that know only stdio or Streamable HTTP.
//!
//! ```text
//!  stdio client (one)        ─┐                       ┌─► request queue ─► server
//!  or HTTP clients (many)    ─┼─► Forwarder (bridge) ─┤   (one QueueClientTransport,
//!  at http://ADDR/mcp        ─┘                       └─◄  one reply queue)
//! ```
//!
//! One queue client connection (one reply queue, one `initialize` with the
//! server) carries every request of every caller: each request is forwarded
//! with [`Forwarder`](crate::bridge::Forwarder), progress comes back to the
//! caller that asked, cancellation goes forward. What the connection created
//! (its reply queue; over SNS its reply topic too) is removed on exit: stdin
//! closed (stdio), SIGTERM or SIGINT.
//!
//! * [`stdio`]: one caller on stdin/stdout; the server's log messages go to
//!   it. When the queue connection ends, the proxy exits with an error.
//! * [`http`]: rmcp's Streamable HTTP server at `/mcp`, any number of
//!   sessions; the server's log messages go to stderr (a log message names
//!   no request, so it belongs to no one session). When the queue
//!   connection ends, requests are answered with an error.

mod front;
mod http;
mod stdio;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::bridge::{Connection, Downstream, DownstreamClient, LogSink, Unavailable};
use crate::connect::{ConnectArgs, environment_help};
use crate::exit::{Done, Failure};
use crate::session::Session;

/// The variable holding the bearer token, unless `--bearer-token-env`
/// names another.
pub(crate) const TOKEN_VAR: &str = "ASYNCMCP_PROXY_TOKEN";

/// How often the stdio proxy checks that the queue connection is still up.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Serves a queue-backed MCP server to a local MCP client.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n  \
     asyncmcp proxy --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/mcp-requests\n  \
     ASYNCMCP_PROXY_TOKEN=$(openssl rand -hex 32) asyncmcp proxy --listen 127.0.0.1:8080 \\\n    \
     --topic-arn arn:aws:sns:us-east-1:123456789012:mcp-requests\n\n\
     In a client's configuration (e.g. Claude Desktop's claude_desktop_config.json):\n  \
     {\"mcpServers\": {\"queued\": {\"command\": \"asyncmcp\", \"args\": [\"proxy\", \
     \"--queue-url\", \"https://sqs.us-east-1.amazonaws.com/123456789012/mcp-requests\"]}}}\n\n\
     Over stdio, stdout carries the protocol and the server's log messages go to the client; \
     the proxy exits when stdin closes, on SIGTERM or SIGINT (0), or when the queue connection \
     ends (1). With --listen, the server's log messages go to stderr; a request after the \
     queue connection ended is answered with an error. Either way the reply queue this proxy \
     created is deleted on exit. --timeout bounds connecting to the server.\n\n",
    environment_help!(),
    "\n  ASYNCMCP_PROXY_TOKEN           with --listen, the bearer token clients must send \
     (unless --bearer-token-env names another variable); never a flag"
))]
#[command(mut_arg("timeout", |arg| arg.help(
    "How long connecting to the server (and its initialize) may take (e.g. `30s`, `5m`)"
)))]
pub(crate) struct ProxyArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio (an IP
    /// address and port, e.g. `127.0.0.1:8080`; port 0 picks a free one).
    /// Only a loopback address, unless a bearer token is set.
    #[arg(long, env = "ASYNCMCP_PROXY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// With --listen, the environment variable holding the bearer token
    /// that every request must carry (`Authorization: Bearer <token>`)
    /// [default: ASYNCMCP_PROXY_TOKEN, when set].
    #[arg(long, value_name = "VAR", requires = "listen")]
    bearer_token_env: Option<String>,
}

/// A setting `proxy` cannot use.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("--bearer-token-env names {0}, which is not set (or empty)")]
    NoToken(String),
    #[error(
        "refusing to listen on {0}, which is not a loopback address, without a bearer token: \
         set one in {TOKEN_VAR} (or the variable --bearer-token-env names), or listen on \
         127.0.0.1"
    )]
    PublicWithoutToken(SocketAddr),
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure::Usage(error.to_string())
    }
}

/// Runs `asyncmcp proxy`.
pub(crate) async fn run(args: ProxyArgs) -> Result<Done, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    match args.listen {
        None => stdio::run(&args.connect).await,
        Some(address) => {
            let token = bearer_token(args.bearer_token_env.as_deref(), env)?;
            if token.is_none() && !address.ip().is_loopback() {
                return Err(ProxyError::PublicWithoutToken(address).into());
            }
            http::run(&args.connect, address, token).await
        }
    }
}

/// The bearer token: from the variable `named` (which must then be set),
/// else from [`TOKEN_VAR`], if set.
fn bearer_token(
    named: Option<&str>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ProxyError> {
    let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    match named {
        Some(name) => set(name)
            .map(Some)
            .ok_or_else(|| ProxyError::NoToken(name.to_owned())),
        None => Ok(set(TOKEN_VAR)),
    }
}

/// The one queue client connection every request goes through.
#[derive(Debug, Clone)]
pub(crate) struct QueueDownstream {
    connection: Arc<Connection>,
}

impl QueueDownstream {
    /// Whether the queue connection has ended.
    fn is_closed(&self) -> bool {
        self.connection.peer.is_transport_closed()
    }

    /// Returns once the queue connection has ended.
    async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    }
}

impl Downstream for QueueDownstream {
    type Lease = Arc<Connection>;

    async fn lease(&self) -> Result<Arc<Connection>, Unavailable> {
        if self.is_closed() {
            return Err(Unavailable(
                "the connection to the queue-backed server has ended".to_owned(),
            ));
        }
        Ok(self.connection.clone())
    }
}

/// Connects to the server named by `connect` and initializes, the server's
/// log messages going to `logs`.
async fn open(
    connect: &ConnectArgs,
    logs: LogSink,
) -> Result<(Session<DownstreamClient>, QueueDownstream), Failure> {
    let target = connect.target()?;
    let handler = DownstreamClient::new("asyncmcp proxy", logs);
    let session = Session::open(target, handler.clone()).await?;
    match handler.connection(session.peer()) {
        Some(connection) => Ok((
            session,
            QueueDownstream {
                connection: Arc::new(connection),
            },
        )),
        None => {
            let missing =
                || Failure::other(anyhow::anyhow!("the server sent no initialize result"));
            match session.finish(Err(missing())).await {
                Err(failure) => Err(failure),
                Ok(_) => Err(missing()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn the_token_comes_from_the_named_variable_or_the_default_one() {
        assert_eq!(bearer_token(None, env(&[])).expect("none"), None);
        assert_eq!(
            bearer_token(None, env(&[(TOKEN_VAR, "t1")])).expect("default"),
            Some("t1".to_owned())
        );
        assert_eq!(
            bearer_token(Some("MINE"), env(&[(TOKEN_VAR, "t1"), ("MINE", "t2")])).expect("named"),
            Some("t2".to_owned())
        );
        assert!(matches!(
            bearer_token(Some("MINE"), env(&[(TOKEN_VAR, "t1"), ("MINE", " ")])),
            Err(ProxyError::NoToken(name)) if name == "MINE"
        ));
    }
}

//! `asyncmcp proxy`: a queue-backed MCP server as a local one, for MCP
//! clients that know only stdio or Streamable HTTP.
//!
//! ```text
//!  stdio client (one)        ─┐                       ┌─► request queue ─► server
//!  or HTTP clients (many)    ─┼─► Forwarder (bridge) ─┤   (one QueueClientTransport,
//!  at http://ADDR/mcp        ─┘                       └─◄  one reply queue)
//! ```
//!
//! One client connection (one reply queue, one `initialize` with the
//! server) carries every request of every caller: each request is forwarded
//! with [`Forwarder`](crate::bridge::Forwarder), progress comes back to the
//! caller that asked, cancellation goes forward. What the connection created
//! (its reply queue; over SNS its reply topic too) is removed on exit: stdin
//! closed (stdio), SIGTERM or SIGINT.
//!
//! With `--webhook-server` the connection is the library's webhook client
//! instead ([`link`]): requests POSTed to a webhook MCP server (`asyncmcp
//! serve --webhook-listen`, Python asyncmcp's webhook server), replies
//! taken on a receiver of the proxy's own; on exit the session is ended at
//! the server.
//!
//! * [`stdio`]: one caller on stdin/stdout; the server's log messages go to
//!   it. When the server connection ends, the proxy exits with an error.
//! * [`http`]: rmcp's Streamable HTTP server at `/mcp`, any number of
//!   sessions; the server's log messages go to stderr (a log message names
//!   no request, so it belongs to no one session). When the queue
//!   connection ends, requests are answered with an error.

mod front;
mod http;
mod hybrid;
mod link;
mod stdio;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::bridge::{Connection, Downstream, DownstreamClient, LogSink, Unavailable};
use crate::connect::{ConnectArgs, environment_help};
use crate::exit::{Done, Failure};
use crate::session::Session;
use crate::webhook_replies::WebhookReplies;
use crate::webhook_secret::WebhookSecret;
use hybrid::WebhookTools;
use link::{Link, WebhookLink, WebhookServer};

/// The variable holding the bearer token, unless `--bearer-token-env`
/// names another.
pub(crate) const TOKEN_VAR: &str = "ASYNCMCP_PROXY_TOKEN";

/// How often the stdio proxy checks that the server connection is still up.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Serves a queue-backed (or webhook) MCP server to a local MCP client.
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
     the proxy exits when stdin closes, on SIGTERM or SIGINT (0), or when the connection to \
     the server ends (1). With --listen, the server's log messages go to stderr; a request after the \
     connection to the server ended is answered with an error. Either way the reply queue this proxy \
     created is deleted on exit. --timeout bounds connecting to the server.\n\n",
    environment_help!(),
    "\n  ASYNCMCP_PROXY_TOKEN           with --listen, the bearer token clients must send \
     (unless --bearer-token-env names another variable); never a flag\n  \
     ASYNCMCP_WEBHOOK_SECRET        with --webhook-server, the Standard Webhooks secret (`whsec_` \
     and base64, at least 24 bytes) signing requests; replies must be signed with it too. Leave \
     it unset for a server that signs nothing (Python asyncmcp). With --webhook-tools, it signs \
     every delivery to a caller's webhook; never a flag\n  \
     ASYNCMCP_WEBHOOK_SECRET_PREVIOUS  the secret before it, still accepted on replies \
     (rotation)\n\n\
     Webhook servers: with --webhook-server URL the server is reached over HTTP instead of a \
     queue (asyncmcp serve --webhook-listen, or Python asyncmcp's webhook transport): each \
     request is POSTed to URL (path /mcp/request when it names none) and the server POSTs the \
     replies to a receiver of this proxy's own, bound with --webhook-listen (default \
     127.0.0.1:0: a free port on loopback) at an unguessable path. When the server reaches \
     this machine by another address (NAT, a tunnel, a TLS proxy), give it with --public-url. \
     The server must allow that URL (asyncmcp serve --reply-webhook). On exit the session is \
     ended at the server.\n\n  \
     asyncmcp proxy --webhook-server http://127.0.0.1:8000/mcp/request\n\n\
     Webhook tools: with --listen and --webhook-tools NAME, a client naming its webhook in \
     initialize (params._meta.webhookUrl: Python asyncmcp's streamable_http_webhook_client) \
     gets each call of a named tool acknowledged 202 at once, and its progress and result \
     POSTed to that webhook, in order, with retries. The webhook must start with a \
     --reply-webhook prefix (https only, and no loopback or private address, unless \
     --allow-http-webhooks, --allow-loopback-webhooks); any other is refused at initialize. \
     Other tools, and sessions without a webhook, are answered on the stream as before.\n\n  \
     asyncmcp proxy --queue-url URL --listen 127.0.0.1:8080 --webhook-tools long-job \\\n    \
     --reply-webhook https://hooks.example.com/"
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

    /// Reach a webhook MCP server at URL instead of a queue: requests are
    /// POSTed to it, replies come back to this proxy's own receiver.
    #[arg(long, value_name = "URL",
          conflicts_with_all = ["queue_url", "topic_arn", "reply_queue_url"])]
    webhook_server: Option<String>,

    /// With --webhook-server, where the receiver of the replies listens (an
    /// IP address and port; port 0 picks a free one) [default: 127.0.0.1:0]
    // No clap default, and the conflicts spelt out: clap checks `requires`
    // neither on an argument with a default nor when the required argument
    // conflicts with one given.
    #[arg(long, value_name = "ADDR", requires = "webhook_server",
          conflicts_with_all = ["queue_url", "topic_arn", "reply_queue_url"])]
    webhook_listen: Option<SocketAddr>,

    /// With --webhook-server, the receiver's URL as the server must call it
    /// (behind NAT, a tunnel or a TLS proxy). With no path, the receiver's
    /// random one is added; with a path, the receiver listens there (choose
    /// one no one can guess) [default:
    /// http://<bound address>/mcp/webhook/<random>]
    #[arg(long, value_name = "URL", requires = "webhook_server",
          conflicts_with_all = ["queue_url", "topic_arn", "reply_queue_url"])]
    public_url: Option<String>,

    /// With --listen, answer calls of this tool at the caller's webhook
    /// (repeatable, or a comma list): acknowledged 202 at once, the result
    /// (and progress) POSTed to the URL the client named in `initialize`
    /// (`_meta.webhookUrl`, Python asyncmcp's StreamableHTTP+webhook client).
    /// Needs --reply-webhook
    #[arg(long = "webhook-tools", value_name = "NAME", value_delimiter = ',',
          requires_all = ["listen", "reply_webhook"])]
    webhook_tools: Vec<String>,

    /// With --webhook-tools, a client's webhook URL must start with this
    /// prefix (repeatable, or a comma list; e.g. `https://hooks.example.com/`)
    #[arg(
        long,
        value_name = "PREFIX",
        value_delimiter = ',',
        requires = "webhook_tools"
    )]
    reply_webhook: Vec<String>,

    /// With --webhook-tools, allow webhooks on loopback addresses, over
    /// plain http too (for local testing)
    #[arg(long, requires = "webhook_tools")]
    allow_loopback_webhooks: bool,

    /// With --webhook-tools, allow plain http:// webhooks (results then
    /// travel in clear text)
    #[arg(long, requires = "webhook_tools")]
    allow_http_webhooks: bool,
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
    let secret = WebhookSecret::from_env(env).map_err(|error| Failure::Usage(error.to_string()))?;
    if secret.is_some() && args.webhook_server.is_none() && args.webhook_tools.is_empty() {
        tracing::warn!(
            "ASYNCMCP_WEBHOOK_SECRET is set but unused: it is for --webhook-server and \
             --webhook-tools"
        );
    }
    let webhook_tools = (!args.webhook_tools.is_empty()).then(|| WebhookTools {
        tools: args.webhook_tools.clone(),
        replies: WebhookReplies {
            prefixes: args.reply_webhook.clone(),
            allow_loopback: args.allow_loopback_webhooks,
            allow_http: args.allow_http_webhooks,
            signer: secret.as_ref().map(|secret| secret.signer.clone()),
        },
    });
    let server = Server {
        connect: &args.connect,
        webhook: args.webhook_server.as_ref().map(|url| WebhookServer {
            url: url.clone(),
            listen: args
                .webhook_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            public_url: args.public_url.clone(),
            client_id: args.connect.client_id.clone(),
            timeout: args.connect.timeout,
        }),
        secret,
    };
    match args.listen {
        None => stdio::run(server).await,
        Some(address) => {
            let token = bearer_token(args.bearer_token_env.as_deref(), env)?;
            if token.is_none() && !address.ip().is_loopback() {
                return Err(ProxyError::PublicWithoutToken(address).into());
            }
            http::run(server, address, token, webhook_tools).await
        }
    }
}

/// How to reach the server: over a queue, or a webhook server.
struct Server<'a> {
    connect: &'a ConnectArgs,
    webhook: Option<WebhookServer>,
    secret: Option<WebhookSecret>,
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

/// The one client connection every request goes through.
#[derive(Debug, Clone)]
pub(crate) struct ServerConnection {
    connection: Arc<Connection>,
}

impl ServerConnection {
    /// Whether the server connection has ended.
    fn is_closed(&self) -> bool {
        self.connection.peer.is_transport_closed()
    }

    /// Returns once the server connection has ended.
    async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    }
}

impl Downstream for ServerConnection {
    type Lease = Arc<Connection>;

    async fn lease(&self) -> Result<Arc<Connection>, Unavailable> {
        if self.is_closed() {
            return Err(Unavailable(
                "the connection to the server has ended".to_owned(),
            ));
        }
        Ok(self.connection.clone())
    }
}

/// Connects to `server` and initializes, the server's log messages going
/// to `logs`.
async fn open(server: Server<'_>, logs: LogSink) -> Result<(Link, ServerConnection), Failure> {
    let handler = DownstreamClient::new("asyncmcp proxy", logs);
    let (link, peer) = match server.webhook {
        None => {
            let session = Session::open_observed(
                server.connect.target()?,
                handler.clone(),
                handler.observer(),
            )
            .await?;
            let peer = session.peer();
            (Link::Queue(session), peer)
        }
        Some(webhook) => {
            let link = WebhookLink::open(&webhook, server.secret, handler.clone()).await?;
            let peer = link.client().peer().clone();
            (Link::Webhook(link), peer)
        }
    };
    match handler.connection(peer) {
        Some(connection) => Ok((
            link,
            ServerConnection {
                connection: Arc::new(connection),
            },
        )),
        None => {
            let missing =
                || Failure::other(anyhow::anyhow!("the server sent no initialize result"));
            match link.finish(Err(missing())).await {
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

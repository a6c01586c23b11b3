//! The proxy's one connection to the server, and how it ends.
//!
//! * Over a queue: a [`Session`], which deletes the reply queue it created
//!   when it finishes.
//! * Over webhooks (`--webhook-server`): the library's
//!   [`WebhookClientTransport`] POSTs requests to the server and takes its
//!   replies on an embedded receiver; finishing closes the receiver and
//!   ends the session at the server with a `DELETE`. With
//!   `ASYNCMCP_WEBHOOK_SECRET` set, every POST is signed and every reply
//!   must be (see [`webhook_secret`](crate::webhook_secret)).

use std::net::SocketAddr;
use std::time::Duration;

use asyncmcp::WebhookClientTransport;
use asyncmcp::client::WebhookClientError;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};

use crate::bridge::DownstreamClient;
use crate::exit::{Done, Failure};
use crate::session::{Session, initialize_failure};
use crate::signals::{Signal, Signals};
use crate::webhook_secret::WebhookSecret;

/// How long ending the webhook session may take before the proxy exits
/// anyway (the server forgets an idle session on its own).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// The connection to the server.
pub(super) enum Link {
    /// Over a queue.
    Queue(Session<DownstreamClient>),
    /// Over webhooks.
    Webhook(WebhookLink),
}

impl Link {
    /// Runs `work` until it is done or a signal comes.
    pub(super) async fn until_signal<F: Future>(&mut self, work: F) -> Result<F::Output, Signal> {
        match self {
            Self::Queue(session) => session.until_signal(work).await,
            Self::Webhook(link) => {
                tokio::select! {
                    output = work => Ok(output),
                    signal = link.signals.recv() => Err(signal),
                }
            }
        }
    }

    /// Closes the connection (removing what it created) and gives
    /// `outcome`, or the signal that cut the closing short.
    pub(super) async fn finish(self, outcome: Result<Done, Failure>) -> Result<Done, Failure> {
        match self {
            Self::Queue(session) => session.finish(outcome).await,
            Self::Webhook(link) => link.finish(outcome).await,
        }
    }
}

/// Where the webhook server is and how its replies reach this proxy.
#[derive(Debug, Clone)]
pub(super) struct WebhookServer {
    /// `--webhook-server`: where requests are POSTed.
    pub(super) url: String,
    /// `--webhook-listen`: where the receiver listens.
    pub(super) listen: SocketAddr,
    /// `--public-url`: the receiver's URL as the server must call it.
    pub(super) public_url: Option<String>,
    /// `--client-id`.
    pub(super) client_id: Option<String>,
    /// `--timeout`: how long connecting and `initialize` may take.
    pub(super) timeout: Duration,
}

/// The receiver's path and the URL the server is told, from `--public-url`
/// and the receiver's `random_path`: a URL with no path gets the random
/// one (what reaches it is passed on unchanged, as a tunnel does); a URL
/// with a path makes the receiver listen there.
fn public_receiver(public: &str, random_path: &str) -> Result<(String, String), Failure> {
    let invalid = |why: &str| Failure::Usage(format!("--public-url {public:?}: {why}"));
    let rest = public
        .strip_prefix("https://")
        .or_else(|| public.strip_prefix("http://"))
        .ok_or_else(|| invalid("not an http:// or https:// URL"))?;
    if rest.contains(['?', '#']) {
        return Err(invalid("a query or fragment cannot be kept"));
    }
    match rest.find('/') {
        Some(0) => Err(invalid("no host")),
        Some(slash) if rest[slash..] != *"/" => Ok((rest[slash..].to_owned(), public.to_owned())),
        _ => Ok((
            random_path.to_owned(),
            format!("{}{random_path}", public.trim_end_matches('/')),
        )),
    }
}

/// An initialized webhook client session, and the signals that stop it.
pub(super) struct WebhookLink {
    client: RunningService<RoleClient, DownstreamClient>,
    signals: Signals,
}

impl WebhookLink {
    /// Starts the receiver and initializes with the server, within the
    /// timeout and until a signal; `handler` is the downstream client.
    pub(super) async fn open(
        server: &WebhookServer,
        secret: Option<WebhookSecret>,
        handler: DownstreamClient,
    ) -> Result<Self, Failure> {
        let mut signals = Signals::install().map_err(Failure::other)?;
        let mut builder = WebhookClientTransport::builder(server.url.clone()).bind(server.listen);
        if let Some(public) = &server.public_url {
            let (path, url) = public_receiver(public, &builder.config().path)?;
            builder = builder.path(path).public_url(url);
        }
        if let Some(id) = &server.client_id {
            builder = builder.client_id(id.clone());
        }
        if let Some(secret) = secret {
            builder = builder.signer(secret.signer).verifier(secret.verifier);
        }
        let transport = builder.start().await.map_err(|error| match error {
            WebhookClientError::ServerUrl { .. } => {
                Failure::Usage(format!("--webhook-server: {error}"))
            }
            error => Failure::other(
                anyhow::Error::new(error).context("cannot start the webhook receiver"),
            ),
        })?;
        tracing::info!(
            server = %server.url,
            receiver = %transport.local_addr(),
            "webhook receiver listening"
        );
        let initialized = tokio::select! {
            started = tokio::time::timeout(server.timeout, handler.clone().serve(handler.observe(transport))) => started,
            signal = signals.recv() => return Err(Failure::Interrupted(signal)),
        };
        match initialized {
            Ok(Ok(client)) => Ok(Self { client, signals }),
            Ok(Err(error)) => Err(initialize_failure(error)),
            Err(_) => Err(Failure::TimedOut(server.timeout)),
        }
    }

    /// The running client.
    pub(super) fn client(&self) -> &RunningService<RoleClient, DownstreamClient> {
        &self.client
    }

    async fn finish(mut self, outcome: Result<Done, Failure>) -> Result<Done, Failure> {
        let client = &mut self.client;
        let interrupted = tokio::select! {
            closed = tokio::time::timeout(CLOSE_LIMIT, client.close()) => {
                match closed {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "the MCP client task failed"),
                    Err(_) => tracing::warn!(
                        "ending the webhook session did not finish within {CLOSE_LIMIT:?}"
                    ),
                }
                None
            }
            signal = self.signals.recv() => Some(signal),
        };
        match (interrupted, outcome) {
            (Some(signal), Ok(_)) => Err(Failure::Interrupted(signal)),
            (_, outcome) => outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_keeps_its_path_or_gets_the_random_one() {
        let random = "/mcp/webhook/0123";
        let pair = |path: &str, url: &str| (path.to_owned(), url.to_owned());
        let read = |public| public_receiver(public, random).ok();
        assert_eq!(
            read("https://abc.tunnel.example"),
            Some(pair(random, "https://abc.tunnel.example/mcp/webhook/0123"))
        );
        assert_eq!(
            read("https://abc.tunnel.example/"),
            Some(pair(random, "https://abc.tunnel.example/mcp/webhook/0123"))
        );
        assert_eq!(
            read("http://10.0.0.5:9000/hooks/q7x"),
            Some(pair("/hooks/q7x", "http://10.0.0.5:9000/hooks/q7x"))
        );
        for bad in ["ftp://h/", "h/x", "https:///x", "https://h/x?token=1"] {
            assert!(
                matches!(public_receiver(bad, random), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }
}

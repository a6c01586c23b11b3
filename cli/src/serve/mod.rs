//! `asyncmcp serve`: a stdio MCP server, in any language, as a queue worker.
//!
//! ```text
//! request queue ──► QueueServer (pollers, dispatch, late ack, replay, DLQ)
//!                      │ one Forwarder per request (bridge)
//!                      ▼
//!                   ChildPool ──► child 1 (stdio) … child N
//! ```
//!
//! The library's [`QueueServer`] does everything a queue needs (bounded
//! in-flight, signatures, the reply allow-list, sealed sessions, replay of
//! duplicates, dead-lettering, drain on SIGTERM); each request is run by a
//! [`Forwarder`](crate::bridge::Forwarder) over the [`pool`] of children,
//! which are started once and multiplex every request over their one stdio
//! connection.
//!
//! With `--webhook-listen` the requests come over HTTP instead and the
//! replies go to webhooks ([`webhook`]).

mod limits;
mod pool;
mod tasks;
mod webhook;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use asyncmcp::QueueServer;
use asyncmcp::wire::session::SessionKeys;
use tokio_util::sync::CancellationToken;

use crate::bridge::Forwarder;
use crate::connect::{self, decode_key, parse_queue_url, parse_topic_arn};
use crate::signals::Signals;
use crate::webhook_replies::WebhookReplies;
use crate::webhook_secret::{SECRET_VAR, WebhookSecret};
use limits::LimitArgs;
use pool::{ChildCommand, ChildPool};
use tasks::TaskArgs;

/// The example and the settings that are not flags, for `--help`.
const AFTER_HELP: &str = "\
Examples:
  asyncmcp serve --queue-url \"$ASYNCMCP_QUEUE_URL\" -- npx -y @modelcontextprotocol/server-everything
  asyncmcp serve --queue-url \"$ASYNCMCP_QUEUE_URL\" --task-tools render,export --task-ttl 2h -- python server.py

Environment:
  ASYNCMCP_QUEUE_URL             the request queue, when --queue-url is not given
  ASYNCMCP_WEBHOOK_LISTEN        the address to take requests over HTTP on, for --webhook-listen
  ASYNCMCP_REPLY_WEBHOOK         webhook URL prefixes replies may go to, comma-separated
  ASYNCMCP_SIGNING_KEY           key checking requests and signing replies (hex or base64, at least
                                 32 bytes); never a flag, so that `ps` does not show it
  ASYNCMCP_SIGNING_KEY_PREVIOUS  the key before it, still accepted on requests (rotation)
  ASYNCMCP_WEBHOOK_SECRET        Standard Webhooks secret (`whsec_` and base64, at least 24
                                 bytes): signs replies POSTed to webhooks, and requests at
                                 --webhook-listen must be signed with it; never a flag
  ASYNCMCP_WEBHOOK_SECRET_PREVIOUS  the secret before it, still accepted on requests (rotation)
  ASYNCMCP_SESSION_KEY           key sealing session ids, the same on every replica (hex or
                                 base64, at least 32 bytes; default: a random key per process)
  ASYNCMCP_SESSION_KEY_PREVIOUS  the session key before it, still accepted (rotation)
  ASYNCMCP_LOG                   log filter on stderr (default `warn`)
  AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ...  AWS settings, from the usual chain

The server process is started once (with --children, several) and kept; it is restarted with
backoff when it exits. Calls it held when it died are not answered: they are delivered again
(and dead-lettered after --max-receive-count deliveries with --dead-letter-queue). Requests it
makes of its client (sampling, roots, elicitation) are refused at once. SIGTERM or Ctrl-C stops
receiving, lets calls in flight finish within --shutdown-grace and releases the rest.

Webhooks: with --webhook-listen, requests are POSTed (DELETE ends a session) to
http://ADDR/mcp/request, the wire of Python asyncmcp's webhook transport, and each reply is
POSTed to the webhook URL the client named, which must start with a --reply-webhook prefix.
The listener has no TLS, and no authentication unless ASYNCMCP_WEBHOOK_SECRET is set: then
every request must carry a valid Standard Webhooks signature (unsigned, tampered, stale and
replayed ones get 401 and never reach the server process). Without it, keep the listener on
loopback or behind a TLS proxy that authenticates callers; leave it unset only for callers
that sign nothing (Python asyncmcp). Requests accepted but not yet answered live only in this
process. Replies go only to public HTTPS addresses unless --allow-http-webhooks (plain http)
or --allow-loopback-webhooks (127.0.0.0/8 and ::1, over http too: local testing) allow more.
With --queue-url, --reply-webhook lets queue requests be answered at a webhook as well.

Tasks: with --tasks (or --task-tools), a tool call from a client that declares the MCP tasks
extension (protocol 2026-07-28; `asyncmcp call --task`) is answered at once with a task, which
the client polls (tasks/get) and may cancel (tasks/cancel); the call runs in the server process
as any other, its progress becomes the task's status message, and its result is kept for
--task-ttl. The server's tools become task-capable without any change to it; other clients get
ordinary results. A task belongs to the connection that started it. --task-store memory keeps
tasks in this process only: they are lost when it exits, and with several replicas on one queue
a poll that reaches another replica finds no task, so replicas need a shared store.

Limits: --tool-limit NAME=N, --tool-rate NAME=PER_SECOND[/BURST], --default-tool-limit and
--caller-limit count the calls of this process only (divide them between replicas). A call over
a limit is put back in the queue, hidden for about its expected wait (one
ChangeMessageVisibility each time), so it holds no --max-in-flight slot and other tools' calls
go on; past --max-limit-wait it is answered with error -32003 naming the limit. Each deferral
raises the message's receive count: give the queue's redrive policy a high maxReceiveCount.";

/// The session key variables.
const SESSION_KEY_VAR: &str = "ASYNCMCP_SESSION_KEY";
const PREVIOUS_SESSION_KEY_VAR: &str = "ASYNCMCP_SESSION_KEY_PREVIOUS";

/// `asyncmcp serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ServeArgs {
    /// The request queue to serve (an SQS queue URL; over SNS, the queue
    /// subscribed to the request topic).
    #[arg(long, env = "ASYNCMCP_QUEUE_URL", value_name = "URL", value_parser = parse_queue_url,
          required_unless_present = "webhook_listen", conflicts_with = "webhook_listen")]
    queue_url: Option<String>,
    /// Take requests over HTTP at http://ADDR/mcp/request instead of from a
    /// queue (no TLS, no authentication: see below); replies go to webhooks.
    #[arg(long, env = "ASYNCMCP_WEBHOOK_LISTEN", value_name = "ADDR",
          requires = "reply_webhook",
          conflicts_with_all = ["shared_reply_topic", "dead_letter_queue", "require_signatures"])]
    webhook_listen: Option<SocketAddr>,
    /// Replies may be POSTed to webhook URLs starting with this prefix
    /// (repeatable; e.g. `https://hooks.example.com/`).
    #[arg(
        long,
        env = "ASYNCMCP_REPLY_WEBHOOK",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    reply_webhook: Vec<String>,
    /// Allow webhooks on loopback addresses, over plain http too (for local
    /// testing).
    #[arg(long)]
    allow_loopback_webhooks: bool,
    /// Allow plain http:// webhooks (replies then travel in clear text).
    #[arg(long)]
    allow_http_webhooks: bool,
    /// Send every reply to this SNS topic, whatever address a request names;
    /// each client subscribes its queue with a filter on its ClientId.
    #[arg(long, env = "ASYNCMCP_SHARED_REPLY_TOPIC", value_name = "ARN", value_parser = parse_topic_arn)]
    shared_reply_topic: Option<String>,
    /// Server processes to run; requests go to the least busy.
    #[arg(long, env = "ASYNCMCP_CHILDREN", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    children: u16,
    /// Requests handled at once (over all children); the queue holds the rest.
    #[arg(long, env = "ASYNCMCP_MAX_IN_FLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_in_flight: u32,
    /// Concurrent long polls of the request queue.
    #[arg(long, env = "ASYNCMCP_POLLERS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pollers: u16,
    /// A call running longer than this is cancelled and answered with an
    /// error (e.g. `30s`, `5m`) [default: none].
    #[arg(long, env = "ASYNCMCP_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    request_timeout: Option<Duration>,
    /// On SIGTERM, how long calls in flight may finish before they are
    /// released to another replica.
    #[arg(long, env = "ASYNCMCP_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// How long to wait for the first server process to be ready.
    #[arg(long, env = "ASYNCMCP_START_TIMEOUT", value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    start_timeout: Duration,
    /// Also allow replies to addresses starting with this prefix
    /// (repeatable). Queues beside the request queue and topics of its
    /// account are always allowed.
    #[arg(long, value_name = "PREFIX")]
    allow_reply_prefix: Vec<String>,
    /// Dead-letter requests here (an SQS queue URL), with the reason, after
    /// --max-receive-count deliveries that did not end with an answer.
    #[arg(long, env = "ASYNCMCP_DEAD_LETTER_QUEUE", value_name = "URL", value_parser = parse_queue_url)]
    dead_letter_queue: Option<String>,
    /// Deliveries before a request is dead-lettered (with --dead-letter-queue).
    #[arg(long, env = "ASYNCMCP_MAX_RECEIVE_COUNT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_receive_count: u32,
    /// Refuse requests that are not signed (needs ASYNCMCP_SIGNING_KEY).
    #[arg(long, env = "ASYNCMCP_REQUIRE_SIGNATURES")]
    require_signatures: bool,
    /// Send replies over the reply queue's limit through this S3 bucket
    /// (under PREFIX), and read requests sent so; see docs/offload.md.
    /// Clients need it too.
    #[arg(
        long,
        env = "ASYNCMCP_OFFLOAD_BUCKET",
        value_name = "BUCKET[/PREFIX]",
        value_parser = crate::offload::parse_offload_bucket
    )]
    offload_bucket: Option<crate::offload::OffloadBucket>,
    /// Send every attribute docs/wire.md defines on each reply
    /// (`MessageType`, `Timestamp`, `SessionId`, `Method` too), for an SNS
    /// filter policy or other tooling that reads them. Default: to asyncmcp
    /// clients, only what they read.
    #[arg(long, env = "ASYNCMCP_FULL_ATTRIBUTES")]
    full_attributes: bool,
    #[command(flatten)]
    tasks: TaskArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// The stdio MCP server to run, and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// A setting `serve` cannot use.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Settings(#[from] connect::SettingsError),
    #[error("one of --queue-url and --webhook-listen is required")]
    NoRequests,
    #[error("--require-signatures needs a key in ASYNCMCP_SIGNING_KEY")]
    SignaturesWithoutKey,
    #[error("{var} is neither hex nor base64")]
    SessionKeyEncoding { var: &'static str },
    #[error("{SESSION_KEY_VAR}: {source}")]
    SessionKey {
        source: asyncmcp::wire::session::SessionError,
    },
    #[error("{PREVIOUS_SESSION_KEY_VAR} is set but {SESSION_KEY_VAR} is not")]
    PreviousSessionKeyOnly,
    #[error("cannot open the request queue: {0}")]
    Queue(#[from] asyncmcp::queue::QueueError),
    #[error(transparent)]
    Listen(#[from] webhook::ListenError),
    #[error(transparent)]
    WebhookSecret(#[from] crate::webhook_secret::SecretError),
    #[error(transparent)]
    Tasks(#[from] tasks::TaskFlagsError),
    #[error("cannot open the task store: {0}")]
    TaskStore(asyncmcp::tasks::TaskStoreError),
    #[error("no server process was ready within {0:?} (its errors are above)")]
    NotReady(Duration),
    #[error("cannot catch signals: {0}")]
    Signals(std::io::Error),
}

/// Runs `serve` until SIGTERM or Ctrl-C.
pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("asyncmcp: error: {error}");
            ExitCode::from(match error {
                ServeError::Settings(_)
                | ServeError::NoRequests
                | ServeError::SignaturesWithoutKey
                | ServeError::SessionKeyEncoding { .. }
                | ServeError::SessionKey { .. }
                | ServeError::PreviousSessionKeyOnly
                | ServeError::WebhookSecret(_)
                | ServeError::Tasks(_) => 2,
                _ => 1,
            })
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let env = |name: &str| std::env::var(name).ok();
    let signing = connect::signing_keys(env)?;
    if args.require_signatures && signing.is_none() {
        return Err(ServeError::SignaturesWithoutKey);
    }
    let session_keys = session_keys(env)?;
    let tasks = args.tasks.settings()?;
    let webhook_secret = WebhookSecret::from_env(env)?;
    let mut signals = Signals::install().map_err(ServeError::Signals)?;

    let replies = WebhookReplies {
        prefixes: args.reply_webhook.clone(),
        allow_loopback: args.allow_loopback_webhooks,
        allow_http: args.allow_http_webhooks,
        signer: webhook_secret.as_ref().map(|secret| secret.signer.clone()),
    };
    if webhook_secret.is_some() && args.webhook_listen.is_none() && replies.prefixes.is_empty() {
        tracing::warn!(
            "{SECRET_VAR} is set but unused: it signs webhook replies (--reply-webhook) and \
             checks requests at --webhook-listen"
        );
    }
    // Bound before the children start, so that a taken port fails at once.
    let (builder, front) = match (&args.queue_url, args.webhook_listen) {
        (_, Some(address)) => {
            let verifier = webhook_secret.map(|secret| secret.verifier);
            let (builder, front) = webhook::listen(address, &replies, verifier).await?;
            (builder, Some(front))
        }
        (Some(queue), None) if replies.prefixes.is_empty() => {
            (QueueServer::sqs(queue).await?, None)
        }
        (Some(queue), None) => (webhook::sqs_with_webhooks(queue, &replies).await?, None),
        (None, None) => return Err(ServeError::NoRequests),
    };
    let mut builder = builder
        .max_in_flight(args.max_in_flight as usize)
        .pollers(usize::from(args.pollers))
        .shutdown_grace(args.shutdown_grace);
    if let Some(timeout) = args.request_timeout {
        builder = builder.request_timeout(timeout);
    }
    for prefix in &args.allow_reply_prefix {
        builder = builder.allow_reply_prefix(prefix.clone());
    }
    if let Some(topic) = &args.shared_reply_topic {
        builder = builder.shared_reply_address(topic.clone());
    }
    if let Some(queue) = &args.dead_letter_queue {
        builder = builder.dead_letter(queue.clone(), args.max_receive_count);
    }
    if let Some(offload) = &args.offload_bucket {
        builder = builder.offload(offload.settings().await);
    }
    if args.full_attributes {
        builder = builder.attribute_detail(asyncmcp::wire::Detail::Full);
    }
    if let Some(keys) = signing {
        builder = builder.signing(keys, args.require_signatures);
    }
    if let Some(keys) = session_keys {
        builder = builder.session_keys(keys);
    }
    let limits_note = match args.limits.limits() {
        Some(limits) => {
            builder = builder.tool_limits(limits);
            "; tool limits on".to_owned()
        }
        None => String::new(),
    };
    let tasks_note = match tasks {
        Some(tasks) => {
            let store = tasks.store.to_string();
            let settings = tasks.open().await.map_err(ServeError::TaskStore)?;
            builder = builder.tasks(settings);
            format!("; tool calls as tasks, kept in {store}")
        }
        None => String::new(),
    };

    let mut words = args.command.into_iter();
    let command = ChildCommand {
        program: words.next().unwrap_or_default(),
        args: words.collect(),
    };
    let stop_children = CancellationToken::new();
    let (pool, mut supervisors) = ChildPool::start(
        command.clone(),
        usize::from(args.children),
        stop_children.clone(),
    );
    tokio::select! {
        ready = pool.ready(args.start_timeout) => {
            if !ready {
                stop_children.cancel();
                while supervisors.join_next().await.is_some() {}
                return Err(ServeError::NotReady(args.start_timeout));
            }
        }
        signal = signals.recv() => {
            tracing::info!(%signal, "stopped before the server process was ready");
            stop_children.cancel();
            while supervisors.join_next().await.is_some() {}
            return Ok(());
        }
    }

    let server = builder.build(move || Forwarder::new(pool.clone()));
    let shutdown = CancellationToken::new();
    let running = server.spawn(shutdown.clone());
    let stop_http = CancellationToken::new();
    let (source, http) = match front {
        Some(front) => (front.url.clone(), Some(front.serve(stop_http.clone()))),
        None => (args.queue_url.clone().unwrap_or_default(), None),
    };
    eprintln!(
        "asyncmcp serve: ready: {} -> {} ({} process{}){}{}",
        source,
        command.program,
        args.children,
        if args.children == 1 { "" } else { "es" },
        tasks_note,
        limits_note
    );
    let signal = signals.recv().await;
    tracing::info!(%signal, "draining");
    // No new requests over HTTP before the server drains.
    stop_http.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    shutdown.cancel();
    if let Err(error) = running.await {
        tracing::error!(%error, "the queue server task failed");
    }
    stop_children.cancel();
    while supervisors.join_next().await.is_some() {}
    Ok(())
}

/// The session keys in the environment, if any.
fn session_keys(var: impl Fn(&str) -> Option<String>) -> Result<Option<SessionKeys>, ServeError> {
    let read = |name: &'static str| -> Result<Option<Vec<u8>>, ServeError> {
        match var(name).filter(|text| !text.trim().is_empty()) {
            None => Ok(None),
            Some(text) => decode_key(&text)
                .map(Some)
                .ok_or(ServeError::SessionKeyEncoding { var: name }),
        }
    };
    match (read(SESSION_KEY_VAR)?, read(PREVIOUS_SESSION_KEY_VAR)?) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ServeError::PreviousSessionKeyOnly),
        (Some(current), previous) => SessionKeys::new(current, previous)
            .map(Some)
            .map_err(|source| ServeError::SessionKey { source }),
    }
}

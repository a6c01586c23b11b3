//! asyncmcp itself: the demo tools behind a [`QueueServer`], called through
//! a [`QueueClientTransport`], over SQS or SNS+SQS.

use std::sync::Arc;

use anyhow::Context;

use asyncmcp::queue::sns::{self, SnsOutbox};
use asyncmcp::queue::sqs::{self, ApiCallCounter, SqsInbox, SqsOutbox};
use asyncmcp::queue::{Outbox, RoutingOutbox, is_topic_arn};
use asyncmcp::server::ServiceFactory;
use asyncmcp::wire::session::SessionKeys;
use asyncmcp::{QueueClientTransport, QueueServer};
use rmcp::ServiceExt;
use rmcp::service::{Peer, RoleClient};
use tokio_util::sync::CancellationToken;

use crate::RoleArgs;
use crate::demo_tools::{DemoServer, DemoStats};
use crate::protocol;

/// Requests a server handles at once: enough for the deepest level.
pub const MAX_IN_FLIGHT: usize = 256;

/// The server: the demo tools on the request queue.
pub async fn serve(args: RoleArgs) -> anyhow::Result<()> {
    serve_with(args, DemoServer::factory(Arc::new(DemoStats::default()))).await
}

/// A [`QueueServer`] running `factory`'s services on the request queue,
/// answering the bench's commands until stdin closes.
/// With `--replicas N`, N servers with their own inboxes (and long polls)
/// on the one request queue, in this process, sharing its SQS client.
pub async fn serve_with(args: RoleArgs, factory: impl ServiceFactory) -> anyhow::Result<()> {
    let factory = Arc::new(factory);
    let counter = ApiCallCounter::new();
    let (sqs_client, outbox) = clients(&args, &counter).await;
    // Replicas share the keys sealing session ids, as a deployment's do, so
    // a session begun on one is served by the other; server processes on
    // one queue (`--scenario scaleout`) are given the same key.
    let session_keys = match &args.session_key {
        Some(hex) => SessionKeys::new(from_hex(hex)?, None)?,
        None => SessionKeys::random(),
    };
    let shutdown = CancellationToken::new();
    let mut servers = Vec::new();
    for _ in 0..args.replicas.max(1) {
        let inbox = SqsInbox::open(sqs_client.clone(), &args.request_queue).await?;
        let mut builder = QueueServer::builder(Arc::new(inbox), outbox.clone())
            .max_in_flight(MAX_IN_FLIGHT)
            .session_keys(session_keys.clone());
        if let Some(pollers) = args.pollers {
            builder = builder.pollers(pollers);
        }
        let factory = factory.clone();
        let replica = builder.build(move || factory.make());
        servers.push(replica.spawn(shutdown.clone()));
    }
    protocol::serve_server(&counter).await?;
    shutdown.cancel();
    for server in servers {
        server.await?;
    }
    Ok(())
}

/// The client: `tools/call echo` through the transport, its one argument
/// named `--echo-field`, after `--warm-up` calls.
pub async fn drive(args: RoleArgs) -> anyhow::Result<()> {
    let counter = ApiCallCounter::new();
    let (sqs_client, outbox) = clients(&args, &counter).await;
    let inbox = SqsInbox::open(sqs_client, &args.reply_queue).await?;
    let mut builder = QueueClientTransport::builder(&args.request_address)
        .reply_address(args.reply_address.clone());
    if let Some(pollers) = args.pollers {
        builder = builder.pollers(pollers);
    }
    let transport = builder.build(Arc::new(inbox), outbox);
    let client = ().serve(transport).await?;
    let echo = Echo::new(client.peer().clone(), &args.echo_field);
    let call = move || echo.clone().once();
    crate::run_level(args.warm_up, 10, call.clone()).await;
    protocol::serve_client(&counter, call).await?;
    client.cancel().await?;
    Ok(())
}

/// One `tools/call echo` through an rmcp client, checked.
#[derive(Clone)]
pub struct Echo {
    peer: Peer<RoleClient>,
    arguments: serde_json::Value,
}

impl Echo {
    /// Echo calls through `peer` with the one argument `field` = `"ping"`.
    pub fn new(peer: Peer<RoleClient>, field: &str) -> Self {
        Self {
            peer,
            arguments: serde_json::json!({ field: ECHOED }),
        }
    }

    /// Makes the call; an error result, or one whose text does not carry
    /// what was sent (the demo's echo returns it as is, server-everything's
    /// as `Echo: ping`), is an error.
    pub async fn once(self) -> anyhow::Result<()> {
        let result = self
            .peer
            .call_tool(crate::support::call("echo", self.arguments))
            .await?;
        anyhow::ensure!(result.is_error != Some(true), "tool error: {result:?}");
        let echoed = result
            .content
            .iter()
            .filter_map(|content| content.as_text())
            .any(|text| text.text.contains(ECHOED));
        anyhow::ensure!(echoed, "echo did not return {ECHOED:?}: {result:?}");
        Ok(())
    }
}

/// What the echo calls send.
const ECHOED: &str = "ping";

/// An SQS client and an outbox for the addresses in `args` (SNS too when
/// one of them is a topic), all counted by `counter`.
async fn clients(args: &RoleArgs, counter: &ApiCallCounter) -> (sqs::Client, Arc<dyn Outbox>) {
    let sdk = sqs::sdk_config_from_env().await;
    let sqs_client = sqs::client_with_counter(&sdk, counter);
    let sqs_outbox = Arc::new(SqsOutbox::new(sqs_client.clone()));
    let uses_topics = is_topic_arn(&args.request_address) || is_topic_arn(&args.reply_address);
    if !uses_topics {
        return (sqs_client, sqs_outbox);
    }
    let sns_client = sns::client_with_counter(&sdk, counter);
    let outbox = RoutingOutbox::new()
        .with(Arc::new(SnsOutbox::new(sns_client)))
        .with(sqs_outbox);
    (sqs_client, Arc::new(outbox))
}

/// Bytes from hex text.
fn from_hex(hex: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        hex.len().is_multiple_of(2) && hex.is_ascii(),
        "--session-key is not hex"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("--session-key is not hex"))
        .collect()
}

/// `bytes` as hex text.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

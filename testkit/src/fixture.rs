//! [`Fixture`]: a demo server on a fresh request queue of a [`TestBroker`],
//! with what a test needs to talk to it, and the waits the tests share.

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::{Inbox, Outbox, QueueMessage};
use asyncmcp::server::QueueServerBuilder;
use asyncmcp::wire::session::SessionKeys;
use asyncmcp::{QueueClientTransport, QueueServer};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::broker::{QueueSpec, TestBroker};
use crate::demo_tools::{DemoServer, DemoStats};

/// A running demo server and what the scenario needs to talk to it.
pub struct Fixture<'a> {
    /// The broker the fixture's queues are on.
    pub broker: &'a dyn TestBroker,
    /// The address of the server's request queue.
    pub requests: String,
    /// What the demo tools of every server replica did.
    pub stats: Arc<DemoStats>,
    /// The outbox every server replica the fixture starts sends through.
    pub(crate) server_outbox: Arc<dyn Outbox>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) server: Option<tokio::task::JoinHandle<()>>,
    /// Shared by every replica the fixture starts, as in a deployment.
    pub(crate) session_keys: SessionKeys,
    /// Deleted when the fixture stops.
    pub(crate) queues: Vec<String>,
}

impl<'a> Fixture<'a> {
    /// Starts a demo server on a fresh request queue.
    pub async fn start(broker: &'a dyn TestBroker) -> Fixture<'a> {
        Self::start_with(broker, |b| b).await
    }

    /// Starts a demo server with a customised builder.
    pub async fn start_with(
        broker: &'a dyn TestBroker,
        customise: impl FnOnce(QueueServerBuilder) -> QueueServerBuilder,
    ) -> Fixture<'a> {
        Self::start_on(broker, QueueSpec::default(), customise).await
    }

    /// Starts a demo server on a request queue made to `spec`.
    pub async fn start_on(
        broker: &'a dyn TestBroker,
        spec: QueueSpec,
        customise: impl FnOnce(QueueServerBuilder) -> QueueServerBuilder,
    ) -> Fixture<'a> {
        Self::start_with_outbox(broker, spec, broker.outbox(), customise).await
    }

    /// Starts a demo server on a request queue made to `spec`, sending
    /// through `server_outbox` (e.g. a [`FaultyOutbox`](crate::FaultyOutbox)).
    pub async fn start_with_outbox(
        broker: &'a dyn TestBroker,
        spec: QueueSpec,
        server_outbox: Arc<dyn Outbox>,
        customise: impl FnOnce(QueueServerBuilder) -> QueueServerBuilder,
    ) -> Fixture<'a> {
        let requests = broker.create_queue_with("requests", spec).await;
        let mut fixture = Fixture {
            broker,
            requests: requests.clone(),
            stats: Arc::new(DemoStats::default()),
            server_outbox,
            shutdown: CancellationToken::new(),
            server: None,
            session_keys: SessionKeys::random(),
            queues: vec![requests],
        };
        fixture.start_server(customise).await;
        fixture
    }

    /// Starts a (further) server replica on the request queue.
    pub async fn start_server(
        &mut self,
        customise: impl FnOnce(QueueServerBuilder) -> QueueServerBuilder,
    ) {
        self.shutdown = CancellationToken::new();
        let builder = QueueServer::builder(
            self.broker.inbox(&self.requests).await,
            self.server_outbox.clone(),
        )
        .shutdown_grace(Duration::from_secs(2))
        // Short polls so that shutdown, which lets a poll finish, is quick.
        .wait(Duration::from_secs(1))
        .session_keys(self.session_keys.clone());
        let server = customise(builder)
            .build(DemoServer::factory(self.stats.clone()))
            .spawn(self.shutdown.clone());
        self.server = Some(server);
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop_server(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// A queue deleted when the fixture stops.
    pub async fn queue(&mut self, prefix: &str) -> String {
        let address = self.broker.create_queue(prefix).await;
        self.queues.push(address.clone());
        address
    }

    /// A client transport with a reply queue of its own.
    pub async fn transport(&mut self) -> QueueClientTransport {
        let replies = self.queue("replies").await;
        let inbox = self.broker.inbox(&replies).await;
        QueueClientTransport::builder(&self.requests)
            .wait(Duration::from_secs(1))
            // The address replies are sent to: a queue, or the topic of a
            // topic-and-queue pair.
            .reply_address(replies)
            .build(inbox, self.broker.outbox())
    }

    /// A legacy (initialize) client.
    pub async fn client(&mut self) -> RunningService<RoleClient, ()> {
        let transport = self.transport().await;
        ().serve(transport).await.expect("client connects")
    }

    /// Sends a raw queue message to the server.
    pub async fn inject(&self, message: QueueMessage) {
        self.broker
            .outbox()
            .send(&self.requests, message)
            .await
            .expect("inject");
    }

    /// Stops the server and deletes the queues.
    pub async fn stop(mut self) {
        self.stop_server().await;
        for queue in std::mem::take(&mut self.queues) {
            self.broker.delete_queue(&queue).await;
        }
    }
}

/// Receives the next message on `inbox` within `within`, deletes it and
/// returns its body as JSON with its attributes.
pub async fn next_reply(inbox: &dyn Inbox, within: Duration) -> Option<(Value, QueueMessage)> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(1));
        let delivered = inbox.receive(1, wait).await.expect("receive");
        if let Some(delivery) = delivered.into_iter().next() {
            inbox.ack(&delivery.receipt).await.expect("ack");
            // Through an SNS subscription without raw delivery, the message
            // comes in an envelope.
            let message =
                asyncmcp::wire::envelope::unwrap(&delivery.message).unwrap_or(delivery.message);
            let body = serde_json::from_str(&message.body).expect("reply is JSON");
            return Some((body, message));
        }
    }
    None
}

/// Waits until `condition` holds, for at most `within`.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

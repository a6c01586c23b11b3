//! [`Layered`]: a [`TestBroker`] seen through layers, so that the contract
//! suite and the scenarios can run on a layer as on a broker.

use std::sync::Arc;

use async_trait::async_trait;
use asyncmcp::queue::layer::Layer;
use asyncmcp::queue::{Inbox, Outbox};

use crate::{QueueSpec, TestBroker};

/// Wraps an inbox of the broker in the layer under test.
type WrapInbox = Box<dyn Fn(Arc<dyn Inbox>) -> Arc<dyn Inbox> + Send + Sync>;

/// `broker` with every inbox it opens and its outbox wrapped in a layer.
///
/// The contract suite checks that messages pass through unchanged, so it
/// suits layers that are transparent to what they let through (envelope
/// unwrapping, retry); the scenarios suit any layer both ends share.
///
/// ```text
/// asyncmcp_testkit::contract_tests!(Layered::new(Memory::new(), UnwrapEnvelopeLayer, RetryLayer::new(d)));
/// ```
pub struct Layered<B> {
    broker: B,
    wrap_inbox: WrapInbox,
    outbox: Arc<dyn Outbox>,
}

impl<B: TestBroker> Layered<B> {
    /// `broker` with its inboxes wrapped in `inbox_layer` and its outbox in
    /// `outbox_layer` (`asyncmcp::queue::layer::Identity` for none).
    pub fn new<I, O>(broker: B, inbox_layer: I, outbox_layer: O) -> Self
    where
        I: Layer<Arc<dyn Inbox>> + Send + Sync + 'static,
        I::Service: Inbox,
        O: Layer<Arc<dyn Outbox>>,
        O::Service: Outbox,
    {
        let outbox = Arc::new(outbox_layer.layer(broker.outbox()));
        Self {
            broker,
            wrap_inbox: Box::new(move |inbox| Arc::new(inbox_layer.layer(inbox))),
            outbox,
        }
    }
}

#[async_trait]
impl<B: TestBroker> TestBroker for Layered<B> {
    async fn create_queue_with(&self, prefix: &str, spec: QueueSpec) -> String {
        self.broker.create_queue_with(prefix, spec).await
    }
    async fn inbox(&self, address: &str) -> Arc<dyn Inbox> {
        (self.wrap_inbox)(self.broker.inbox(address).await)
    }
    fn outbox(&self) -> Arc<dyn Outbox> {
        self.outbox.clone()
    }
    async fn delete_queue(&self, address: &str) {
        self.broker.delete_queue(address).await;
    }
    async fn depth(&self, address: &str) -> usize {
        self.broker.depth(address).await
    }
}

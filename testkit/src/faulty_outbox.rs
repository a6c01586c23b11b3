//! An outbox for a scenario's server that records every send it is asked
//! to make, can fail the final response of one request, and never forwards
//! to an address the scenario has refused.
//!
//! The server's own outbox is the seam through which it answers, so this is
//! where a test can see what the server tried to send (not only what
//! arrived) and make a reply fail the way a broker would.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use asyncmcp::queue::{Outbox, QueueError, QueueMessage};
use serde_json::Value;

/// How an injected failure fails, as `QueueError::is_permanent` sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A passing broker error (throttling, a network error): worth retrying.
    Transient,
    /// The destination does not exist: retrying cannot help.
    Permanent,
}

impl Failure {
    fn error(self, address: &str) -> QueueError {
        let error = match self {
            Failure::Transient => QueueError::service("injected: broker unreachable"),
            Failure::Permanent => QueueError::NoSuchQueue(address.to_owned()),
        };
        assert_eq!(error.is_permanent(), self == Failure::Permanent);
        error
    }
}

/// One send the server asked for.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Where the send was to go.
    pub address: String,
    /// The size the broker counts against its limit.
    pub size: usize,
    /// The body, parsed when it is JSON.
    pub body: Option<Value>,
    /// Whether the send was failed or refused here instead of forwarded.
    pub failed: bool,
}

impl Attempt {
    /// Whether this is the final response (or error) of request `id`: a
    /// JSON-RPC message with that id and no method.
    pub fn is_final_of(&self, id: &Value) -> bool {
        self.body
            .as_ref()
            .is_some_and(|body| body.get("method").is_none() && body.get("id") == Some(id))
    }
}

/// The final response of request `id` to `address` fails `times` more times.
struct Fault {
    address: String,
    id: Value,
    failure: Failure,
    times: usize,
}

/// See the module documentation.
pub struct FaultyOutbox {
    inner: Arc<dyn Outbox>,
    attempts: Mutex<Vec<Attempt>>,
    fault: Mutex<Option<Fault>>,
    refused: Mutex<Vec<String>>,
}

impl FaultyOutbox {
    /// Forwards to `inner` until told otherwise.
    pub fn new(inner: Arc<dyn Outbox>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            attempts: Mutex::default(),
            fault: Mutex::default(),
            refused: Mutex::default(),
        })
    }

    /// Fails the next `times` sends of request `id`'s final response to
    /// `address` with `failure`.
    pub fn fail_final(&self, address: &str, id: Value, failure: Failure, times: usize) {
        *self.fault.lock().expect("fault") = Some(Fault {
            address: address.to_owned(),
            id,
            failure,
            times,
        });
    }

    /// Never forwards a send to `address`: it is recorded and fails as an
    /// unsupported destination. For addresses a server must not use, so
    /// that a server that did try reaches nothing outside the test.
    pub fn refuse(&self, address: &str) {
        self.refused
            .lock()
            .expect("refused")
            .push(address.to_owned());
    }

    /// Every send asked for so far, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("attempts").clone()
    }

    /// Every address a send was asked for, in order.
    pub fn destinations(&self) -> Vec<String> {
        self.attempts().into_iter().map(|a| a.address).collect()
    }

    /// The sends of request `id`'s final response (or error) to `address`.
    pub fn finals(&self, address: &str, id: &Value) -> Vec<Attempt> {
        self.attempts()
            .into_iter()
            .filter(|a| a.address == address && a.is_final_of(id))
            .collect()
    }

    fn injected_failure(&self, attempt: &Attempt) -> Option<QueueError> {
        let refused = self.refused.lock().expect("refused");
        if refused.contains(&attempt.address) {
            return Some(QueueError::UnsupportedDestination(attempt.address.clone()));
        }
        let mut fault = self.fault.lock().expect("fault");
        let fault = fault.as_mut()?;
        if fault.times == 0 || fault.address != attempt.address || !attempt.is_final_of(&fault.id) {
            return None;
        }
        fault.times -= 1;
        Some(fault.failure.error(&attempt.address))
    }
}

#[async_trait]
impl Outbox for FaultyOutbox {
    fn accepts(&self, address: &str) -> bool {
        self.inner.accepts(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        let mut attempt = Attempt {
            address: address.to_owned(),
            size: message.wire_size(),
            body: serde_json::from_str(&message.body).ok(),
            failed: false,
        };
        let failure = self.injected_failure(&attempt);
        attempt.failed = failure.is_some();
        self.attempts.lock().expect("attempts").push(attempt);
        match failure {
            Some(error) => Err(error),
            None => self.inner.send(address, message).await,
        }
    }

    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.inner.max_message_size(address).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use asyncmcp::MemoryBroker;
    use asyncmcp::queue::memory::MemoryQueueOptions;
    use asyncmcp::queue::{Inbox, Outbox, QueueError, QueueMessage};
    use serde_json::json;

    use super::{Failure, FaultyOutbox};

    fn reply(id: u64) -> QueueMessage {
        QueueMessage::new(json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string())
    }

    #[tokio::test]
    async fn records_fails_as_told_and_never_forwards_a_refused_address() {
        let broker = MemoryBroker::new();
        let queue = broker.create_queue("replies", MemoryQueueOptions::default());
        let outbox = FaultyOutbox::new(std::sync::Arc::new(broker.outbox()));
        outbox.refuse("memory://refused");
        outbox.fail_final(&queue, json!(7), Failure::Transient, 1);

        let refused = outbox.send("memory://refused", reply(1)).await;
        assert!(
            matches!(refused, Err(QueueError::UnsupportedDestination(_))),
            "{refused:?}"
        );
        let failed = outbox.send(&queue, reply(7)).await;
        assert!(
            matches!(&failed, Err(error) if !error.is_permanent()),
            "{failed:?}"
        );
        outbox
            .send(&queue, reply(7))
            .await
            .expect("the second send");
        let notice = QueueMessage::new(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#);
        outbox.send(&queue, notice).await.expect("a notification");

        assert_eq!(
            outbox.destinations(),
            ["memory://refused", &queue, &queue, &queue]
        );
        let finals = outbox.finals(&queue, &json!(7));
        let failed: Vec<bool> = finals.iter().map(|a| a.failed).collect();
        assert_eq!(failed, [true, false]);
        let inbox = broker.inbox(&queue).expect("inbox");
        let delivered = inbox.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(delivered.len(), 2, "the reply and the notification");
    }
}

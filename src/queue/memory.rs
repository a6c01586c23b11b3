//! An in-process broker with SQS semantics.
//!
//! [`MemoryBroker`] keeps named queues in memory, addressed as
//! `memory://<name>`. It is the embedded default for the quickstart and the
//! broker of fast tests, so it behaves like a standard SQS queue where that
//! matters to a consumer:
//!
//! * **Visibility timeout.** A received message is hidden, not removed. It is
//!   settled by [`ack`](Inbox::ack) (deleted), [`release`](Inbox::release)
//!   (visible again at once) or [`extend`](Inbox::extend) (hidden for longer);
//!   if none of these comes before its visibility lapses, it becomes visible
//!   again and is redelivered with its receive count one higher.
//! * **Receipts** are unique per delivery. A receipt settles its delivery
//!   until the message is delivered again; after that it is
//!   [`InvalidReceipt`](QueueError::InvalidReceipt). As in SQS, `extend` and
//!   `release` also need the message to still be in flight.
//! * **Long polling.** [`receive`](Inbox::receive) waits up to `wait` (at
//!   most [`MAX_WAIT`], as in SQS) and returns as soon as a message becomes
//!   visible, by a send, a release or a lapsed visibility. Waiting uses a
//!   [`Notify`] and a timer, never a busy loop, so tests can run under
//!   `tokio::time::pause()`.
//! * **Redrive.** With a [`RedrivePolicy`], a message about to be received
//!   more than `max_receive_count` times moves to the dead-letter queue
//!   instead, with its receive count reset.
//! * **Size limit.** A message whose [`wire_size`](QueueMessage::wire_size)
//!   exceeds the queue's `max_message_size` is refused with
//!   [`TooLarge`](QueueError::TooLarge).
//!
//! Order is first-in first-out, except that a message whose visibility lapses
//! goes to the back and a released one to the front. There are no FIFO
//! queues, delays or retention limits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    DEFAULT_MAX_MESSAGE_SIZE, Delivery, Inbox, MAX_RECEIVE_BATCH, MAX_WAIT, Outbox, QueueError,
    QueueInfo, QueueMessage, Receipt,
};

#[cfg(test)]
mod tests;

/// The scheme of memory queue addresses.
pub const MEMORY_SCHEME: &str = "memory://";

/// The longest visibility timeout, as in SQS (12 hours); longer ones are
/// cut to it.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// Where a queue sends messages it has failed to process too often.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedrivePolicy {
    /// The dead-letter queue's address (`memory://...`, same broker).
    pub dead_letter_queue: String,
    /// How many receives a message gets before it moves (at least 1).
    pub max_receive_count: u32,
}

/// How a memory queue behaves.
///
/// Built from [`Default`] with the `with_*` methods (or by setting fields).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryQueueOptions {
    /// How long a received message stays hidden (SQS default: 30 s; at
    /// most [`MAX_VISIBILITY`]).
    pub visibility_timeout: Duration,
    /// The largest message accepted, as [`QueueMessage::wire_size`] counts.
    pub max_message_size: usize,
    /// Optional dead-letter queue.
    pub redrive: Option<RedrivePolicy>,
}

impl RedrivePolicy {
    /// Moves a message to `dead_letter_queue` (of the same broker) once it
    /// has been received `max_receive_count` times.
    pub fn new(dead_letter_queue: impl Into<String>, max_receive_count: u32) -> Self {
        Self {
            dead_letter_queue: dead_letter_queue.into(),
            max_receive_count,
        }
    }
}

impl MemoryQueueOptions {
    /// Sets [`visibility_timeout`](Self::visibility_timeout).
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`redrive`](Self::redrive).
    pub fn with_redrive(mut self, redrive: RedrivePolicy) -> Self {
        self.redrive = Some(redrive);
        self
    }
}

impl Default for MemoryQueueOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            redrive: None,
        }
    }
}

/// An in-process broker with SQS semantics; see the [module docs](self).
///
/// Cheap to clone: clones share the same queues.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    queues: Arc<Mutex<HashMap<String, Arc<Queue>>>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = lock(&self.queues).keys().cloned().collect();
        f.debug_struct("MemoryBroker")
            .field("queues", &names)
            .finish()
    }
}

struct Queue {
    info: QueueInfo,
    redrive: Option<RedrivePolicy>,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    visible: VecDeque<Stored>,
    in_flight: HashMap<String, InFlight>,
    deleted: bool,
}

struct Stored {
    id: String,
    message: QueueMessage,
    receive_count: u32,
    /// When the broker took the message.
    sent_at: std::time::SystemTime,
    /// The receipt of the last delivery, still good until the next one.
    last_receipt: Option<String>,
}

struct InFlight {
    stored: Stored,
    visible_at: Instant,
}

/// Locks a mutex, recovering from poisoning: every critical section here
/// leaves the state consistent, so a panic elsewhere does not corrupt it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// Makes every delivery whose visibility has lapsed visible again.
    fn reap(&mut self, now: Instant) {
        let lapsed: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, flight)| flight.visible_at <= now)
            .map(|(receipt, _)| receipt.clone())
            .collect();
        for receipt in lapsed {
            if let Some(flight) = self.in_flight.remove(&receipt) {
                let mut stored = flight.stored;
                stored.last_receipt = Some(receipt);
                self.visible.push_back(stored);
            }
        }
    }

    fn next_lapse(&self) -> Option<Instant> {
        self.in_flight.values().map(|f| f.visible_at).min()
    }
}

impl MemoryBroker {
    /// A broker with no queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates queue `name` and returns its address, `memory://<name>`.
    /// Idempotent: if the queue exists, its address is returned and its
    /// options are left as they were.
    pub fn create_queue(&self, name: &str, options: MemoryQueueOptions) -> String {
        let address = format!("{MEMORY_SCHEME}{name}");
        let mut queues = lock(&self.queues);
        if queues.contains_key(&address) {
            tracing::debug!(%address, "memory queue exists already");
            return address;
        }
        let queue = Queue {
            info: QueueInfo {
                address: address.clone(),
                visibility_timeout: options.visibility_timeout.min(MAX_VISIBILITY),
                max_message_size: options.max_message_size,
                fifo: false,
                region: None,
            },
            redrive: options.redrive,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        };
        queues.insert(address.clone(), Arc::new(queue));
        address
    }

    /// Deletes a queue and its messages; pending receives on it fail with
    /// [`NoSuchQueue`](QueueError::NoSuchQueue). Returns whether it existed.
    pub fn delete_queue(&self, address: &str) -> bool {
        let Some(queue) = lock(&self.queues).remove(address) else {
            return false;
        };
        {
            let mut state = lock(&queue.state);
            state.deleted = true;
            state.visible.clear();
            state.in_flight.clear();
        }
        queue.changed.notify_waiters();
        true
    }

    /// An inbox consuming the queue at `address`.
    pub fn inbox(&self, address: &str) -> Result<MemoryInbox, QueueError> {
        Ok(MemoryInbox {
            broker: self.clone(),
            queue: self.queue(address)?,
        })
    }

    /// An outbox sending to this broker's queues.
    pub fn outbox(&self) -> MemoryOutbox {
        MemoryOutbox {
            broker: self.clone(),
        }
    }

    /// How many messages the queue holds: `(visible, in flight)`. `(0, 0)`
    /// for an unknown queue.
    pub fn depth(&self, address: &str) -> (usize, usize) {
        let Ok(queue) = self.queue(address) else {
            return (0, 0);
        };
        let mut state = lock(&queue.state);
        state.reap(Instant::now());
        (state.visible.len(), state.in_flight.len())
    }

    fn queue(&self, address: &str) -> Result<Arc<Queue>, QueueError> {
        if !address.starts_with(MEMORY_SCHEME) {
            return Err(QueueError::UnsupportedDestination(address.to_owned()));
        }
        lock(&self.queues)
            .get(address)
            .cloned()
            .ok_or_else(|| QueueError::NoSuchQueue(address.to_owned()))
    }

    fn push(&self, queue: &Queue, stored: Stored) -> Result<(), QueueError> {
        {
            let mut state = lock(&queue.state);
            if state.deleted {
                return Err(QueueError::NoSuchQueue(queue.info.address.clone()));
            }
            state.visible.push_back(stored);
        }
        queue.changed.notify_waiters();
        Ok(())
    }
}

/// A consumer of one memory queue; see [`MemoryBroker::inbox`].
pub struct MemoryInbox {
    broker: MemoryBroker,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for MemoryInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryInbox")
            .field("info", &self.queue.info)
            .finish()
    }
}

impl MemoryInbox {
    fn no_such_queue(&self) -> QueueError {
        QueueError::NoSuchQueue(self.queue.info.address.clone())
    }

    /// Delivers up to `max` visible messages into `deliveries`, moving those
    /// past the redrive limit to `dead` instead (when there is a `dlq`).
    fn take(
        &self,
        state: &mut State,
        max: usize,
        dlq: Option<&Arc<Queue>>,
        deliveries: &mut Vec<Delivery>,
        dead: &mut Vec<Stored>,
    ) {
        let now = Instant::now();
        state.reap(now);
        let limit = self.queue.redrive.as_ref().map(|p| p.max_receive_count);
        while deliveries.len() < max {
            let Some(mut stored) = state.visible.pop_front() else {
                break;
            };
            if let Some(limit) = limit.filter(|&l| stored.receive_count >= l) {
                if dlq.is_some() {
                    dead.push(stored);
                    continue;
                }
                tracing::warn!(
                    queue = %self.queue.info.address,
                    limit,
                    "dead-letter queue missing; delivering the message again"
                );
            }
            stored.receive_count = stored.receive_count.saturating_add(1);
            stored.last_receipt = None;
            let receipt = uuid::Uuid::new_v4().to_string();
            deliveries.push(Delivery {
                message_id: stored.id.clone(),
                receipt: Receipt(receipt.clone()),
                receive_count: stored.receive_count,
                message: stored.message.clone(),
                refused: None,
                sent_at: Some(stored.sent_at),
            });
            let visible_at = now + self.queue.info.visibility_timeout;
            state
                .in_flight
                .insert(receipt, InFlight { stored, visible_at });
        }
    }
}

#[async_trait]
impl Inbox for MemoryInbox {
    fn info(&self) -> &QueueInfo {
        &self.queue.info
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let max = max.clamp(1, MAX_RECEIVE_BATCH);
        // Waits are capped at the SQS limit, as SqsInbox does.
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let notified = self.queue.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so no notification falls in between.
            notified.as_mut().enable();
            let dlq = match &self.queue.redrive {
                Some(policy) => self.broker.queue(&policy.dead_letter_queue).ok(),
                None => None,
            };
            let mut deliveries = Vec::new();
            let mut dead = Vec::new();
            let next_lapse = {
                let mut state = lock(&self.queue.state);
                if state.deleted {
                    return Err(self.no_such_queue());
                }
                self.take(&mut state, max, dlq.as_ref(), &mut deliveries, &mut dead);
                state.next_lapse()
            };
            if let Some(dlq) = dlq {
                for mut stored in dead {
                    tracing::debug!(message_id = %stored.id, dlq = %dlq.info.address, "redriving");
                    stored.receive_count = 0;
                    stored.last_receipt = None;
                    if let Err(error) = self.broker.push(&dlq, stored) {
                        tracing::warn!(%error, "dead-letter queue vanished; message dropped");
                    }
                }
            }
            if !deliveries.is_empty() || Instant::now() >= deadline {
                return Ok(deliveries);
            }
            let until = next_lapse.map_or(deadline, |lapse| lapse.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let mut state = lock(&self.queue.state);
        if state.deleted {
            return Err(self.no_such_queue());
        }
        state.reap(Instant::now());
        if state.in_flight.remove(&receipt.0).is_some() {
            return Ok(());
        }
        // Lapsed but not yet redelivered: as in SQS, the receipt still works.
        let position = state
            .visible
            .iter()
            .position(|s| s.last_receipt.as_deref() == Some(receipt.0.as_str()));
        match position {
            Some(index) => {
                state.visible.remove(index);
                Ok(())
            }
            None => Err(QueueError::InvalidReceipt),
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        if visibility.is_zero() {
            return self.release(receipt).await;
        }
        {
            let mut state = lock(&self.queue.state);
            if state.deleted {
                return Err(self.no_such_queue());
            }
            let now = Instant::now();
            state.reap(now);
            let flight = state
                .in_flight
                .get_mut(&receipt.0)
                .ok_or(QueueError::InvalidReceipt)?;
            flight.visible_at = now + visibility.min(MAX_VISIBILITY);
        }
        // Waiters may be sleeping until the old lapse; let them recompute.
        self.queue.changed.notify_waiters();
        Ok(())
    }

    async fn release(&self, receipt: &Receipt) -> Result<(), QueueError> {
        {
            let mut state = lock(&self.queue.state);
            if state.deleted {
                return Err(self.no_such_queue());
            }
            state.reap(Instant::now());
            let flight = state
                .in_flight
                .remove(&receipt.0)
                .ok_or(QueueError::InvalidReceipt)?;
            let mut stored = flight.stored;
            stored.last_receipt = Some(receipt.0.clone());
            state.visible.push_front(stored);
        }
        self.queue.changed.notify_waiters();
        Ok(())
    }
}

/// Sends to the queues of one [`MemoryBroker`]; see [`MemoryBroker::outbox`].
#[derive(Debug, Clone)]
pub struct MemoryOutbox {
    broker: MemoryBroker,
}

#[async_trait]
impl Outbox for MemoryOutbox {
    fn accepts(&self, address: &str) -> bool {
        address.starts_with(MEMORY_SCHEME)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        let queue = self.broker.queue(address)?;
        let size = message.wire_size();
        let limit = queue.info.max_message_size;
        if size > limit {
            return Err(QueueError::TooLarge { size, limit });
        }
        let stored = Stored {
            id: uuid::Uuid::new_v4().to_string(),
            message,
            receive_count: 0,
            sent_at: std::time::SystemTime::now(),
            last_receipt: None,
        };
        self.broker.push(&queue, stored)
    }

    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        Ok(self.broker.queue(address)?.info.max_message_size)
    }
}

//! Hands a request's notifications to rmcp before its final response.
//!
//! Standard SQS queues and SNS fan-out do not keep order: a request's final
//! response can arrive before the progress notifications its handler sent
//! earlier, and rmcp drops progress for a request that has already ended.
//! Servers of this crate number the messages of each request (`RequestId` and
//! `Sequence` attributes; notifications 1, 2, …, the response last), so a
//! response numbered `n` says that `n - 1` notifications precede it. A
//! response that arrives early is held until they have all arrived, or until
//! a bounded wait ([`QueueClientConfig::order_wait`]) ends: a lost
//! notification delays a response, it never loses it. Messages without
//! numbers (e.g. from Python servers) pass straight through.
//!
//! [`QueueClientConfig::order_wait`]: super::QueueClientConfig::order_wait

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use rmcp::model::ServerJsonRpcMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a tracker of notifications may sit idle before it is pruned.
const IDLE: Duration = Duration::from_secs(600);

/// A message from the reply queue with its ordering attributes.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) message: ServerJsonRpcMessage,
    pub(super) request_id: Option<String>,
    pub(super) sequence: Option<u64>,
}

/// The reordering buffer. Pure state: the transport drives it and its clock.
///
/// Each message costs O(log n) in the number of requests tracked: trackers
/// are found by request id in a hash map, and two ordered indexes say which
/// held response is due first and which idle tracker is oldest, so no
/// operation scans the trackers (only closing, which releases them all).
#[derive(Debug)]
pub(super) struct Reorder {
    wait: Duration,
    tracks: HashMap<String, Track>,
    /// Trackers holding a response, by its deadline. The tracker's serial
    /// keeps keys unique.
    deadlines: BTreeMap<(Instant, u64), String>,
    /// Trackers holding nothing, by when they were last touched: the oldest
    /// are pruned once idle for [`IDLE`].
    idle: BTreeMap<(Instant, u64), String>,
    next_serial: u64,
    ready: VecDeque<ServerJsonRpcMessage>,
    /// Trackers and index entries looked at, to show the cost of an
    /// operation in tests.
    #[cfg(test)]
    visits: std::sync::atomic::AtomicUsize,
}

/// What is known of one request's messages. It is in exactly one index:
/// `deadlines` while it holds a response, `idle` otherwise.
#[derive(Debug)]
struct Track {
    serial: u64,
    /// The `Sequence` numbers of the request's notifications handed over so
    /// far: a notification the queue delivers twice counts once.
    delivered: HashSet<u64>,
    /// A final response waiting for notifications.
    held: Option<Held>,
    touched: Instant,
}

impl Track {
    /// Its key in the index it belongs in.
    fn key(&self) -> (Instant, u64) {
        match &self.held {
            Some(held) => (held.deadline, self.serial),
            None => (self.touched, self.serial),
        }
    }
}

#[derive(Debug)]
struct Held {
    message: ServerJsonRpcMessage,
    /// Notifications that precede it.
    needed: u64,
    deadline: Instant,
}

impl Reorder {
    /// The next message for rmcp, in order, from what arrives on
    /// `incoming`: what each client transport's `receive` does. `None` once
    /// `incoming` is closed and everything held has been handed over.
    ///
    /// Cancel-safe: a message leaves the channel and enters the buffer in
    /// one step, with no await between.
    pub(super) async fn next_from(
        &mut self,
        incoming: &mut mpsc::Receiver<Received>,
    ) -> Option<ServerJsonRpcMessage> {
        loop {
            if let Some(message) = self.pop() {
                return Some(message);
            }
            let deadline = self.next_deadline();
            tokio::select! {
                received = incoming.recv() => match received {
                    Some(received) => self.push(received, Instant::now()),
                    None => {
                        self.expire(None);
                        return self.pop();
                    }
                },
                () = sleep_until_or_never(deadline) => self.expire(Some(Instant::now())),
            }
        }
    }

    /// A buffer that holds a response at most `wait` for its notifications.
    pub(super) fn new(wait: Duration) -> Self {
        Self {
            wait,
            tracks: HashMap::new(),
            deadlines: BTreeMap::new(),
            idle: BTreeMap::new(),
            next_serial: 0,
            ready: VecDeque::new(),
            #[cfg(test)]
            visits: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Counts `n` trackers or index entries looked at (tests only).
    fn visited(&self, n: usize) {
        #[cfg(test)]
        self.visits
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let _ = n;
    }

    /// Takes in one received message.
    pub(super) fn push(&mut self, received: Received, now: Instant) {
        let (Some(request_id), Some(sequence)) = (received.request_id, received.sequence) else {
            self.ready.push_back(received.message);
            return;
        };
        let is_final = matches!(
            received.message,
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
        );
        self.prune(now);
        // Out of the map and its index while it changes; put back (under its
        // new key) unless the request is done.
        let mut track = match self.tracks.remove(&request_id) {
            Some(track) => {
                self.unindex(&track);
                track
            }
            None => {
                let serial = self.next_serial;
                self.next_serial += 1;
                Track {
                    serial,
                    delivered: HashSet::new(),
                    held: None,
                    touched: now,
                }
            }
        };
        track.touched = now;
        if is_final {
            let needed = sequence.saturating_sub(1);
            if track.delivered.len() as u64 >= needed {
                self.ready.push_back(received.message);
                return;
            }
            tracing::debug!(
                request_id = %request_id,
                missing = needed.saturating_sub(track.delivered.len() as u64),
                "response arrived before its notifications; holding it"
            );
            track.held = Some(Held {
                message: received.message,
                needed,
                deadline: now + self.wait,
            });
        } else {
            track.delivered.insert(sequence);
            self.ready.push_back(received.message);
            if track
                .held
                .as_ref()
                .is_some_and(|held| track.delivered.len() as u64 >= held.needed)
                && let Some(held) = track.held.take()
            {
                self.ready.push_back(held.message);
                return;
            }
        }
        self.index(request_id, track);
    }

    /// The next message to hand over, if any.
    pub(super) fn pop(&mut self) -> Option<ServerJsonRpcMessage> {
        self.ready.pop_front()
    }

    /// When the earliest held response stops waiting.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let first = self.deadlines.first_key_value()?;
        self.visited(1);
        Some(first.0.0)
    }

    /// Releases the responses whose wait has ended by `now` (all of them when
    /// `now` is `None`, at close), earliest deadline first.
    pub(super) fn expire(&mut self, now: Option<Instant>) {
        while let Some(first) = self.deadlines.first_key_value() {
            self.visited(1);
            let key = *first.0;
            if now.is_some_and(|now| key.0 > now) {
                break;
            }
            let Some(id) = self.deadlines.remove(&key) else {
                break;
            };
            if let Some(held) = self.tracks.remove(&id).and_then(|track| track.held) {
                tracing::warn!(
                    request_id = %id,
                    missing = held.needed,
                    "notifications of a request did not arrive in time; handing over its response"
                );
                self.ready.push_back(held.message);
            }
        }
    }

    /// Forgets idle trackers that hold nothing: requests whose notifications
    /// arrived after their response, or that never got one. Oldest first,
    /// and only those due: amortised O(log n) a message.
    fn prune(&mut self, now: Instant) {
        while let Some(first) = self.idle.first_key_value() {
            self.visited(1);
            let key = *first.0;
            if now.duration_since(key.0) < IDLE {
                break;
            }
            if let Some(id) = self.idle.remove(&key) {
                self.tracks.remove(&id);
            }
        }
    }

    /// Puts `track` in the map and in the index its state calls for.
    fn index(&mut self, request_id: String, track: Track) {
        self.visited(1);
        let index = if track.held.is_some() {
            &mut self.deadlines
        } else {
            &mut self.idle
        };
        index.insert(track.key(), request_id.clone());
        self.tracks.insert(request_id, track);
    }

    /// Takes `track` (just removed from the map) out of its index.
    fn unindex(&mut self, track: &Track) {
        self.visited(1);
        let index = if track.held.is_some() {
            &mut self.deadlines
        } else {
            &mut self.idle
        };
        index.remove(&track.key());
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn progress(n: u64) -> ServerJsonRpcMessage {
        serde_json::from_value(json!({"jsonrpc":"2.0","method":"notifications/progress",
            "params":{"progressToken":"t","progress":n}}))
        .unwrap()
    }

    fn response() -> ServerJsonRpcMessage {
        serde_json::from_value(json!({"jsonrpc":"2.0","id":1,"result":{}})).unwrap()
    }

    fn numbered(message: ServerJsonRpcMessage, sequence: u64) -> Received {
        Received {
            message,
            request_id: Some("1".into()),
            sequence: Some(sequence),
        }
    }

    fn drain(reorder: &mut Reorder) -> Vec<&'static str> {
        std::iter::from_fn(|| reorder.pop())
            .map(|m| match m {
                ServerJsonRpcMessage::Notification(_) => "progress",
                _ => "response",
            })
            .collect()
    }

    #[test]
    fn early_response_waits_for_its_notifications() {
        let now = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(1));
        reorder.push(numbered(progress(1), 1), now);
        reorder.push(numbered(response(), 3), now);
        assert_eq!(drain(&mut reorder), ["progress"]);
        assert!(reorder.next_deadline().is_some());
        reorder.push(numbered(progress(2), 2), now);
        assert_eq!(drain(&mut reorder), ["progress", "response"]);
        assert_eq!(reorder.next_deadline(), None);
        assert!(reorder.tracks.is_empty());
        assert!(reorder.deadlines.is_empty() && reorder.idle.is_empty());
    }

    #[test]
    fn a_duplicated_notification_counts_once() {
        let now = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(1));
        reorder.push(numbered(progress(1), 1), now);
        reorder.push(numbered(progress(1), 1), now);
        reorder.push(numbered(response(), 3), now);
        assert_eq!(drain(&mut reorder), ["progress", "progress"]);
        reorder.push(numbered(progress(2), 2), now);
        assert_eq!(drain(&mut reorder), ["progress", "response"]);
    }

    #[test]
    fn in_order_messages_pass_straight_through() {
        let now = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(1));
        reorder.push(numbered(progress(1), 1), now);
        reorder.push(numbered(response(), 2), now);
        assert_eq!(drain(&mut reorder), ["progress", "response"]);
        let unnumbered = Received {
            message: response(),
            request_id: None,
            sequence: None,
        };
        reorder.push(unnumbered, now);
        assert_eq!(drain(&mut reorder), ["response"]);
    }

    #[test]
    fn a_lost_notification_delays_the_response_only_until_the_deadline() {
        let now = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(1));
        reorder.push(numbered(response(), 2), now);
        assert!(drain(&mut reorder).is_empty());
        reorder.expire(Some(now + Duration::from_millis(999)));
        assert!(drain(&mut reorder).is_empty());
        reorder.expire(reorder.next_deadline());
        assert_eq!(drain(&mut reorder), ["response"]);
    }

    #[test]
    fn close_releases_everything_held() {
        let now = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(60));
        reorder.push(numbered(response(), 5), now);
        reorder.expire(None);
        assert_eq!(drain(&mut reorder), ["response"]);
    }

    /// Trackers and index entries looked at by one message's work: a push,
    /// the pops, the next deadline and an expiry, with `held` responses
    /// already waiting for their notifications.
    fn visits_for_one_message(held: usize) -> usize {
        let now = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(60));
        for i in 0..held {
            let mut early = numbered(response(), 2);
            early.request_id = Some(format!("held-{i}"));
            reorder.push(early, now);
        }
        assert!(drain(&mut reorder).is_empty());
        reorder
            .visits
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let later = now + Duration::from_millis(1);
        reorder.push(numbered(progress(1), 1), later);
        assert_eq!(drain(&mut reorder), ["progress"]);
        assert_eq!(reorder.next_deadline(), Some(now + Duration::from_secs(60)));
        reorder.expire(Some(later));
        assert!(drain(&mut reorder).is_empty());
        reorder.visits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The work per message does not grow with the number of requests
    /// tracked: with 100 000 responses held, one more message looks at no
    /// more trackers or index entries than with 10 (a scan would look at
    /// every one of them).
    #[test]
    fn one_message_costs_the_same_with_many_requests_tracked() {
        let few = visits_for_one_message(10);
        let many = visits_for_one_message(100_000);
        assert_eq!(many, few, "visits with 100 000 requests tracked vs 10");
        assert!(few <= 8, "{few} visits with 10 requests tracked");
    }

    #[test]
    fn idle_trackers_are_pruned() {
        let start = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(1));
        for i in 0..=1024 {
            let mut late = numbered(progress(1), 1);
            late.request_id = Some(i.to_string());
            reorder.push(late, start);
        }
        reorder.push(numbered(progress(1), 1), start + IDLE);
        assert_eq!(reorder.tracks.len(), 1);
        assert_eq!(reorder.idle.len(), 1);
    }
}

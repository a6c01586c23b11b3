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

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use rmcp::model::ServerJsonRpcMessage;
use tokio::time::Instant;

/// Requests tracked before idle trackers are pruned.
const PRUNE_ABOVE: usize = 1024;

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
#[derive(Debug)]
pub(super) struct Reorder {
    wait: Duration,
    tracks: HashMap<String, Track>,
    ready: VecDeque<ServerJsonRpcMessage>,
}

#[derive(Debug)]
struct Track {
    /// The `Sequence` numbers of the request's notifications handed over so
    /// far: a notification the queue delivers twice counts once.
    delivered: HashSet<u64>,
    /// A final response waiting for notifications.
    held: Option<Held>,
    touched: Instant,
}

#[derive(Debug)]
struct Held {
    message: ServerJsonRpcMessage,
    /// Notifications that precede it.
    needed: u64,
    deadline: Instant,
}

impl Reorder {
    /// A buffer that holds a response at most `wait` for its notifications.
    pub(super) fn new(wait: Duration) -> Self {
        Self {
            wait,
            tracks: HashMap::new(),
            ready: VecDeque::new(),
        }
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
        if self.tracks.len() > PRUNE_ABOVE {
            self.prune(now);
        }
        let track = self.tracks.entry(request_id.clone()).or_insert(Track {
            delivered: HashSet::new(),
            held: None,
            touched: now,
        });
        track.touched = now;
        if is_final {
            let needed = sequence.saturating_sub(1);
            if track.delivered.len() as u64 >= needed {
                self.tracks.remove(&request_id);
                self.ready.push_back(received.message);
            } else {
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
            }
            return;
        }
        track.delivered.insert(sequence);
        self.ready.push_back(received.message);
        if track
            .held
            .as_ref()
            .is_some_and(|held| track.delivered.len() as u64 >= held.needed)
            && let Some(track) = self.tracks.remove(&request_id)
            && let Some(held) = track.held
        {
            self.ready.push_back(held.message);
        }
    }

    /// The next message to hand over, if any.
    pub(super) fn pop(&mut self) -> Option<ServerJsonRpcMessage> {
        self.ready.pop_front()
    }

    /// When the earliest held response stops waiting.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.tracks
            .values()
            .filter_map(|track| track.held.as_ref().map(|held| held.deadline))
            .min()
    }

    /// Releases the responses whose wait has ended by `now` (all of them when
    /// `now` is `None`, at close).
    pub(super) fn expire(&mut self, now: Option<Instant>) {
        let due: Vec<String> = self
            .tracks
            .iter()
            .filter(|(_, track)| {
                track
                    .held
                    .as_ref()
                    .is_some_and(|held| now.is_none_or(|now| held.deadline <= now))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
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
    /// arrived after their response, or that never got one.
    fn prune(&mut self, now: Instant) {
        self.tracks
            .retain(|_, track| track.held.is_some() || now.duration_since(track.touched) < IDLE);
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

    #[test]
    fn idle_trackers_are_pruned() {
        let start = Instant::now();
        let mut reorder = Reorder::new(Duration::from_secs(1));
        for i in 0..=PRUNE_ABOVE {
            let mut late = numbered(progress(1), 1);
            late.request_id = Some(i.to_string());
            reorder.push(late, start);
        }
        reorder.push(numbered(progress(1), 1), start + IDLE);
        assert_eq!(reorder.tracks.len(), 1);
    }
}

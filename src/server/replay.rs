//! Recently answered requests, so a duplicate is answered again without
//! running its handler twice.
//!
//! Queues deliver at least once: SQS may hand the same message out twice,
//! and a client that heard nothing may send a request again. When a request
//! has been answered, its final response is kept here, keyed like the
//! in-flight registry (origin and request id), for a window (default 5
//! minutes) and within a byte budget (default 64 MiB, oldest evicted first).
//! A delivery of a kept request is answered with the kept response and
//! deleted; the tool does not run again.
//!
//! The cache is per process: a duplicate that reaches another replica, or
//! arrives after a restart, runs again. Effects that must happen at most once
//! across replicas need an idempotency key of the tool's own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::inflight::RequestKey;

/// A kept final response, as its JSON body.
struct Kept {
    response: String,
    size: usize,
    at: Instant,
}

/// The replay cache of one server.
pub(super) struct ReplayCache {
    window: Duration,
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    kept: HashMap<RequestKey, Kept>,
    /// Keys in the order they were kept, for eviction.
    order: VecDeque<(RequestKey, Instant)>,
    bytes: usize,
}

impl ReplayCache {
    /// A cache keeping responses for `window`, at most `budget` bytes of
    /// them. A zero window or budget keeps nothing.
    pub(super) fn new(window: Duration, budget: usize) -> Self {
        Self {
            window,
            budget,
            inner: Mutex::default(),
        }
    }

    /// Keeps the final response (its JSON body) of `key`.
    pub(super) fn keep(&self, key: RequestKey, response: String, now: Instant) {
        let size = response.len() + key.0.len() + key.1.len();
        if self.window.is_zero() || size > self.budget {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now, self.window);
        if let Some(old) = inner.kept.remove(&key) {
            inner.bytes -= old.size;
        }
        while inner.bytes + size > self.budget {
            if !inner.evict_oldest() {
                break;
            }
        }
        inner.bytes += size;
        inner.order.push_back((key.clone(), now));
        inner.kept.insert(
            key,
            Kept {
                response,
                size,
                at: now,
            },
        );
    }

    /// The kept response of `key`, if it was answered within the window.
    pub(super) fn get(&self, key: &RequestKey, now: Instant) -> Option<String> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now, self.window);
        inner.kept.get(key).map(|kept| kept.response.clone())
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

impl Inner {
    /// Drops what was kept longer than `window` ago.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((_, at)) = self.order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Drops the oldest entry; false when there was none.
    fn evict_oldest(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        // The key may have been kept again since; only its own entry goes.
        if self.kept.get(&key).is_some_and(|kept| kept.at == at)
            && let Some(kept) = self.kept.remove(&key)
        {
            self.bytes -= kept.size;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> RequestKey {
        ("client".into(), id.into())
    }

    #[test]
    fn kept_responses_are_replayed_within_the_window() {
        let cache = ReplayCache::new(Duration::from_secs(60), 1 << 20);
        let now = Instant::now();
        let response = r#"{"jsonrpc":"2.0","id":1,"result":{"n":1}}"#.to_owned();
        cache.keep(key("1"), response.clone(), now);
        assert_eq!(cache.get(&key("1"), now), Some(response));
        assert_eq!(cache.get(&key("2"), now), None);
        assert_eq!(cache.get(&key("1"), now + Duration::from_secs(60)), None);
        assert_eq!(cache.bytes(), 0, "expired entries free their bytes");
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_first() {
        let one = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"text":"{}"}}}}"#,
            "x".repeat(100)
        );
        let size = one.len() + "client".len() + 1;
        let cache = ReplayCache::new(Duration::from_secs(60), size * 2);
        let now = Instant::now();
        for id in ["1", "2", "3"] {
            cache.keep(key(id), one.clone(), now);
        }
        assert_eq!(cache.get(&key("1"), now), None);
        assert!(cache.get(&key("2"), now).is_some());
        assert!(cache.get(&key("3"), now).is_some());
        assert!(cache.bytes() <= size * 2);
    }

    #[test]
    fn keeping_a_key_again_replaces_it_and_zero_window_keeps_nothing() {
        let cache = ReplayCache::new(Duration::from_secs(60), 1 << 20);
        let now = Instant::now();
        cache.keep(key("1"), "1".to_owned(), now);
        cache.keep(key("1"), "2".to_owned(), now + Duration::from_secs(1));
        // The first entry's expiry must not drop the second.
        assert_eq!(
            cache.get(&key("1"), now + Duration::from_secs(60)),
            Some("2".to_owned())
        );
        let off = ReplayCache::new(Duration::ZERO, 1 << 20);
        off.keep(key("1"), "1".to_owned(), now);
        assert_eq!(off.get(&key("1"), now), None);
    }
}

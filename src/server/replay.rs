//! Recently answered requests, so a duplicate is answered again without
//! running its handler twice.
//!
//! Queues deliver at least once: SQS may hand the same message out twice,
//! and a client that heard nothing may send a request again. When a request
//! has been answered, its final response is kept here, keyed like the
//! in-flight registry (caller, reply address, request id and a digest of
//! the request's body: see [`inflight`](super::inflight)), for a window (default 5
//! minutes) and within a memory budget (default 64 MiB, oldest evicted
//! first). A delivery of a kept request is answered with the kept response
//! and deleted; the tool does not run again.
//!
//! The budget bounds what the cache really holds, not only the responses:
//! an entry is a 128-bit digest of its key, a timestamp and the response's
//! JSON text, which lies with the others in one buffer; each is counted with
//! its share of the tables, and the tables and the buffer give their memory
//! back as entries expire. Expiry happens as requests come: an idle server
//! keeps its last responses, within the budget, until the next one.
//!
//! The cache is per process: a duplicate that reaches another replica, or
//! arrives after a restart, runs again. Effects that must happen at most once
//! across replicas need an idempotency key of the tool's own.
//!
//! A response that could not be sent is kept too, and its request made
//! visible again after a short backoff ([`retry_backoff`]) rather than its
//! whole visibility timeout, so the redelivery replays it soon. Should
//! that change of visibility fail, the redelivery comes only after the
//! visibility timeout: so every entry is kept for at least that long and a
//! margin ([`lifetime`]), whatever the window, and the answer outlives any
//! redelivery that comes on time.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::mem::size_of;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::inflight::RequestKey;

/// A request's key reduced to 128 bits: two 64-bit hashes of it under
/// random per-process keys. Kept instead of the key itself because the
/// origin is usually a sealed session id of a few hundred bytes, which
/// would otherwise be stored again with every response of the session. Two
/// distinct keys share a digest with a chance of about n²/2¹²⁹ for n kept
/// entries, and without the hash keys no one can aim for that.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Digest(u64, u64);

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Either half is uniformly distributed already.
        state.write_u64(self.0);
    }
}

/// Where a kept response's body lies in the log.
struct Kept {
    /// Its first byte, counted from the first byte ever logged.
    position: u64,
    len: u32,
    /// Whether its request was dead-lettered already (the response may
    /// then be the notice telling the caller): a replay that cannot be sent
    /// then only ends, it does not move the request again.
    dead_lettered: bool,
}

/// A kept response, as [`ReplayCache::get`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Replay {
    /// The response's JSON text.
    pub(super) body: String,
    /// Whether the request was dead-lettered already.
    pub(super) dead_lettered: bool,
}

/// An entry of the eviction order. The log holds the bodies in the same
/// order, so evicting the oldest entry frees the log's first bytes.
struct Slot {
    digest: Digest,
    at: Instant,
    len: u32,
}

/// What an entry's slot in the map costs. A table is at most 7/8 full and
/// grows by doubling; as entries come and go it also grows when it fills up
/// with the marks removals leave, as soon as it is half full: up to 32/7
/// slots per entry, each with a control byte. (It is shrunk before it gets
/// sparser; see [`Inner::shrink`].)
const MAP_COST: usize = (size_of::<(Digest, Kept)>() + 1) * 32 / 7;

/// What an entry of the eviction order costs: the deque doubles when full
/// and is shrunk when half empty, so it has at most two slots per entry.
const ORDER_COST: usize = 2 * size_of::<Slot>();

/// The log's first size; it doubles from there, within the budget.
const MIN_LOG: usize = 64 << 10;

/// Tables of fewer entries than this are not shrunk: not worth a
/// reallocation.
const SHRINK_ABOVE: usize = 1024;

/// The first backoff before a request whose answer could not be sent is
/// delivered again; it doubles with each delivery, up to [`RETRY_CAP`].
pub(super) const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest backoff before a request is delivered again.
pub(super) const RETRY_CAP: Duration = Duration::from_secs(20);

/// How long a due redelivery may take beyond its visibility timeout to be
/// received and reach its replay lookup: a long poll (up to 20 s) and a
/// wait for a free in-flight slot.
pub(super) const REDELIVERY_MARGIN: Duration = Duration::from_secs(60);

/// How long a request whose answer (or error reply) could not be sent stays
/// hidden before it is delivered again, on its `receive_count`th delivery:
/// [`RETRY_FIRST`], doubled with each delivery, at most [`RETRY_CAP`] and
/// never longer than the queue's `visibility` timeout (it would have come
/// back then anyway).
pub(super) fn retry_backoff(receive_count: u32, visibility: Duration) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(RETRY_CAP)
        .min(visibility)
}

/// How long the cache keeps each response: the configured `window`, but at
/// least the request queue's `visibility` timeout and a margin, so that a
/// request whose answer could not be sent finds it when it is delivered
/// again, even when its visibility could not be shortened. A zero window
/// (replay off) stays zero.
pub(super) fn lifetime(window: Duration, visibility: Duration) -> Duration {
    if window.is_zero() {
        return Duration::ZERO;
    }
    window.max(visibility.saturating_add(REDELIVERY_MARGIN))
}

/// The replay cache of one server.
pub(super) struct ReplayCache {
    window: Duration,
    budget: usize,
    /// The keys of [`Digest`]s.
    hashers: (RandomState, RandomState),
    inner: Mutex<Inner>,
}

/// The budget counts the log's capacity and each entry's share of the
/// tables, so it bounds the memory the cache holds, not only the bodies.
#[derive(Default)]
struct Inner {
    kept: HashMap<Digest, Kept, BuildHasherDefault<DigestHasher>>,
    /// Oldest first. An entry kept again leaves its earlier slot (and body)
    /// here until that slot is evicted.
    order: VecDeque<Slot>,
    /// The kept bodies back to back, oldest first: one buffer rather than
    /// an allocation per response, which would scatter long-lived blocks
    /// among short-lived ones and keep the heap's pages resident.
    log: VecDeque<u8>,
    /// The position of the log's first byte.
    log_start: u64,
}

impl ReplayCache {
    /// A cache keeping responses for `window`, using at most `budget`
    /// bytes for them and their bookkeeping. A zero window or budget keeps
    /// nothing.
    pub(super) fn new(window: Duration, budget: usize) -> Self {
        Self {
            window,
            budget,
            hashers: (RandomState::new(), RandomState::new()),
            inner: Mutex::default(),
        }
    }

    /// Keeps the final response (its JSON body) of `key`.
    pub(super) fn keep(&self, key: RequestKey, response: String, now: Instant) {
        let Ok(len) = u32::try_from(response.len()) else {
            return;
        };
        if self.window.is_zero() || response.len() + MAP_COST + ORDER_COST > self.budget {
            return;
        }
        let digest = self.digest(&key);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now, self.window);
        inner.shrink();
        inner.kept.remove(&digest);
        // Make room: the log may have to grow, and the new entry adds its
        // share of the tables.
        let capacity = loop {
            let overhead = (inner.kept.len() + 1) * MAP_COST + (inner.order.len() + 1) * ORDER_COST;
            let room = self.budget.saturating_sub(overhead);
            let needed = inner.log.len() + response.len();
            let capacity = if needed <= inner.log.capacity() {
                inner.log.capacity()
            } else {
                // Doubled, but to no more than the log's share of the
                // budget at the present mix of bodies and entries: a log
                // taking all the room would leave none for more entries.
                let share = self.budget as u128 * needed as u128 / (needed + overhead) as u128;
                let share = usize::try_from(share).unwrap_or(usize::MAX);
                (inner.log.capacity() * 2)
                    .max(MIN_LOG)
                    .min(share)
                    .max(needed)
            };
            if capacity <= room {
                break capacity;
            }
            if !inner.evict_oldest() {
                // Empty, and the log's spare capacity alone is too much.
                inner.log = VecDeque::new();
            }
        };
        if capacity > inner.log.capacity() {
            let additional = capacity - inner.log.len();
            inner.log.reserve_exact(additional);
        }
        let position = inner.log_start + inner.log.len() as u64;
        inner.log.extend(response.as_bytes());
        inner.order.push_back(Slot {
            digest,
            at: now,
            len,
        });
        inner.kept.insert(
            digest,
            Kept {
                position,
                len,
                dead_lettered: false,
            },
        );
    }

    /// Notes that `key`'s request was dead-lettered, if a response of it
    /// is kept (see [`Replay::dead_lettered`]).
    pub(super) fn mark_dead_lettered(&self, key: &RequestKey) {
        let digest = self.digest(key);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = inner.kept.get_mut(&digest) {
            kept.dead_lettered = true;
        }
    }

    /// The kept response of `key`, if it was answered within the window.
    pub(super) fn get(&self, key: &RequestKey, now: Instant) -> Option<Replay> {
        if self.window.is_zero() {
            return None;
        }
        let digest = self.digest(key);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now, self.window);
        inner.shrink();
        let kept = inner.kept.get(&digest)?;
        let start = usize::try_from(kept.position.checked_sub(inner.log_start)?).ok()?;
        let end = start + kept.len as usize;
        let dead_lettered = kept.dead_lettered;
        if end > inner.log.len() {
            return None;
        }
        let body = String::from_utf8(inner.log.range(start..end).copied().collect()).ok()?;
        Some(Replay {
            body,
            dead_lettered,
        })
    }

    fn digest(&self, key: &RequestKey) -> Digest {
        Digest(self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// Entries kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kept
            .len()
    }

    /// The bytes counted against the budget.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.log.capacity() + inner.kept.len() * MAP_COST + inner.order.len() * ORDER_COST
    }
}

impl Inner {
    /// Drops what was kept longer than `window` ago.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(slot) = self.order.front() {
            if now.duration_since(slot.at) < window {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Drops the oldest entry; false when there was none.
    fn evict_oldest(&mut self) -> bool {
        let Some(slot) = self.order.pop_front() else {
            return false;
        };
        let position = self.log_start;
        let len = (slot.len as usize).min(self.log.len());
        self.log.drain(..len);
        self.log_start += len as u64;
        // The key may have been kept again since; only its own entry goes.
        if self
            .kept
            .get(&slot.digest)
            .is_some_and(|kept| kept.position == position)
        {
            self.kept.remove(&slot.digest);
        }
        true
    }

    /// Gives memory back as entries go: the tables and the log keep their
    /// largest size otherwise, and a burst of requests would hold its
    /// memory long after its entries expired. Each is shrunk to more than
    /// it holds, so that neither the next entry nor the next call shrinks
    /// or grows it again at once.
    fn shrink(&mut self) {
        if self.order.is_empty() {
            *self = Self {
                log_start: self.log_start,
                ..Self::default()
            };
            return;
        }
        if self.kept.capacity() > SHRINK_ABOVE && self.kept.len() * 4 < self.kept.capacity() {
            self.kept.shrink_to(self.kept.len() * 2);
        }
        if self.order.capacity() > SHRINK_ABOVE && self.order.len() * 2 < self.order.capacity() {
            self.order.shrink_to(self.order.len() * 3 / 2);
        }
        if self.log.capacity() > MIN_LOG && self.log.len() * 4 < self.log.capacity() {
            self.log.shrink_to((self.log.len() * 2).max(MIN_LOG));
        }
    }
}

/// Hashes a [`Digest`] by taking one half: digests are uniformly
/// distributed already, and nobody can choose them.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps any other input mixed in.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the bytes each thread has allocated and not yet freed, so that
    /// a test can weigh what the cache really holds.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
        }

        pub(super) struct Counting;

        fn add(bytes: isize) {
            // Not counted while the thread is being torn down.
            let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
        }

        /// Bytes this thread allocated and has not freed.
        pub(super) fn live() -> isize {
            LIVE.with(Cell::get)
        }

        // SAFETY: every call goes to `System` unchanged; only a counter is
        // kept beside it.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                add(layout.size() as isize);
                // SAFETY: forwarded with the caller's layout.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                add(-(layout.size() as isize));
                // SAFETY: `ptr` came from `System` with `layout`.
                unsafe { System.dealloc(ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                add(new_size as isize - layout.size() as isize);
                // SAFETY: as for `dealloc`; `new_size` is the caller's.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: counting::Counting = counting::Counting;

    use crate::server::inflight::Caller;

    /// The body kept for `key`, as text.
    fn got(cache: &ReplayCache, key: &RequestKey, now: Instant) -> Option<String> {
        cache.get(key, now).map(|replay| replay.body)
    }

    /// Marking a request dead-lettered shows on its kept response, and
    /// only on it; a response kept again starts unmarked.
    #[test]
    fn a_dead_lettered_mark_stays_with_its_entry() {
        let cache = ReplayCache::new(Duration::from_secs(60), 1 << 20);
        let now = Instant::now();
        cache.keep(key("1"), "{}".to_owned(), now);
        cache.keep(key("2"), "{}".to_owned(), now);
        cache.mark_dead_lettered(&key("1"));
        cache.mark_dead_lettered(&key("3"));
        assert_eq!(
            cache.get(&key("1"), now).map(|r| r.dead_lettered),
            Some(true)
        );
        assert_eq!(
            cache.get(&key("2"), now).map(|r| r.dead_lettered),
            Some(false)
        );
        assert_eq!(cache.get(&key("3"), now), None);
        cache.keep(key("1"), "[]".to_owned(), now);
        assert_eq!(
            cache.get(&key("1"), now).map(|r| r.dead_lettered),
            Some(false)
        );
    }

    fn key(id: &str) -> RequestKey {
        key_of("client", id)
    }

    /// The key of a ping with `id` from `origin`, answered at one address.
    fn key_of(origin: &str, id: &str) -> RequestKey {
        let caller = Caller {
            origin: origin.into(),
            reply_to: "memory://replies".into(),
            request_id: id.into(),
        };
        RequestKey::new(caller, &format!(r#"{{"id":{id},"method":"ping"}}"#))
    }

    /// An origin as long as a sealed session id.
    fn session_origin() -> String {
        format!("v1.{}.{}", "n".repeat(22), "p".repeat(190))
    }

    fn echo_response(id: usize) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"ping"}}],"isError":false}}}}"#
        )
    }

    #[test]
    fn entries_outlive_a_redelivery_after_the_visibility_timeout() {
        let minute = Duration::from_secs(60);
        // A 5 min window on a queue with a 15 min visibility: kept for the
        // visibility and the margin.
        assert_eq!(
            lifetime(5 * minute, 15 * minute),
            15 * minute + REDELIVERY_MARGIN
        );
        // A window longer than that is kept as it is.
        assert_eq!(lifetime(60 * minute, 30 * minute / 60), 60 * minute);
        assert_eq!(lifetime(5 * minute, Duration::ZERO), 5 * minute);
        // Replay off stays off.
        assert_eq!(lifetime(Duration::ZERO, 15 * minute), Duration::ZERO);
        // And the cache built with that lifetime still has the response
        // when the redelivery comes after the whole visibility timeout.
        let cache = ReplayCache::new(lifetime(5 * minute, 15 * minute), 1 << 20);
        let start = Instant::now();
        cache.keep(key("1"), "{}".to_owned(), start);
        let redelivered = start + 15 * minute + Duration::from_secs(30);
        assert_eq!(got(&cache, &key("1"), redelivered).as_deref(), Some("{}"));
    }

    #[test]
    fn the_retry_backoff_grows_within_the_cap_and_the_visibility() {
        let long = Duration::from_secs(15 * 60);
        let backoffs: Vec<u64> = (1..=7)
            .map(|count| retry_backoff(count, long).as_secs())
            .collect();
        assert_eq!(backoffs, [1, 2, 4, 8, 16, 20, 20]);
        assert_eq!(retry_backoff(u32::MAX, long), RETRY_CAP);
        assert_eq!(retry_backoff(0, long), RETRY_FIRST);
        // Never later than the queue would redeliver anyway.
        assert_eq!(
            retry_backoff(5, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(retry_backoff(1, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn kept_responses_are_replayed_within_the_window() {
        let cache = ReplayCache::new(Duration::from_secs(60), 1 << 20);
        let now = Instant::now();
        let response = r#"{"jsonrpc":"2.0","id":1,"result":{"n":1}}"#.to_owned();
        cache.keep(key("1"), response.clone(), now);
        assert_eq!(got(&cache, &key("1"), now), Some(response));
        assert_eq!(got(&cache, &key("2"), now), None);
        assert_eq!(got(&cache, &key("1"), now + Duration::from_secs(60)), None);
        assert_eq!(cache.bytes(), 0, "expired entries free their bytes");
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_first() {
        let one = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"text":"{}"}}}}"#,
            "x".repeat(100)
        );
        let size = one.len() + MAP_COST + ORDER_COST;
        let cache = ReplayCache::new(Duration::from_secs(60), size * 2);
        let now = Instant::now();
        for id in ["1", "2", "3"] {
            cache.keep(key(id), one.clone(), now);
        }
        assert_eq!(got(&cache, &key("1"), now), None);
        assert!(got(&cache, &key("2"), now).is_some());
        assert!(got(&cache, &key("3"), now).is_some());
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
            got(&cache, &key("1"), now + Duration::from_secs(60)),
            Some("2".to_owned())
        );
        let off = ReplayCache::new(Duration::ZERO, 1 << 20);
        off.keep(key("1"), "1".to_owned(), now);
        assert_eq!(got(&off, &key("1"), now), None);
    }

    #[test]
    fn keys_are_told_apart_by_origin_id_address_and_body() {
        let cache = ReplayCache::new(Duration::from_secs(60), 1 << 20);
        let now = Instant::now();
        cache.keep(key_of("a", "1"), "a/1".to_owned(), now);
        assert_eq!(got(&cache, &key_of("a1", ""), now), None);
        assert_eq!(got(&cache, &key_of("b", "1"), now), None);
        let mut elsewhere = key_of("a", "1");
        elsewhere.caller.reply_to = "memory://elsewhere".into();
        assert_eq!(got(&cache, &elsewhere, now), None);
        let other_body =
            RequestKey::new(key_of("a", "1").caller, r#"{"id":1,"method":"tools/list"}"#);
        assert_eq!(got(&cache, &other_body, now), None);
        assert_eq!(got(&cache, &key_of("a", "1"), now), Some("a/1".to_owned()));
    }

    #[test]
    fn the_budget_bounds_the_memory_held_not_only_the_responses() {
        // Small responses under long session ids: the case where the
        // bookkeeping outweighs the responses.
        let budget = 256 << 10;
        let origin = session_origin();
        let now = Instant::now();
        let before = counting::live();
        let cache = ReplayCache::new(Duration::from_secs(60), budget);
        for id in 0..20_000 {
            cache.keep(key_of(&origin, &id.to_string()), echo_response(id), now);
        }
        let held = counting::live() - before;
        assert!(
            held <= budget as isize,
            "{} entries hold {held} bytes, over the budget of {budget}",
            cache.len()
        );
        let size = echo_response(0).len() + MAP_COST + ORDER_COST;
        assert!(
            cache.len() >= budget / size / 2,
            "only {} entries kept",
            cache.len()
        );
    }

    #[test]
    fn expired_entries_give_their_memory_back() {
        let origin = session_origin();
        let now = Instant::now();
        let before = counting::live();
        let cache = ReplayCache::new(Duration::from_secs(60), 64 << 20);
        for id in 0..20_000 {
            cache.keep(key_of(&origin, &id.to_string()), echo_response(id), now);
        }
        assert_eq!(cache.len(), 20_000);
        let later = now + Duration::from_secs(60);
        assert_eq!(got(&cache, &key_of(&origin, "0"), later), None);
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
        let held = counting::live() - before;
        assert!(
            held < 4 << 10,
            "{held} bytes still held once every entry expired"
        );
    }
}

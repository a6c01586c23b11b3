//! The webhook of each Streamable HTTP session, in a bounded table.
//!
//! Entries are added only for session ids the inner service has just minted
//! (the `Mcp-Session-Id` of a successful `initialize` answer), so a client
//! cannot attach a webhook to a session it did not create. The table holds at
//! most `capacity` entries: when full, the least recently used one is
//! forgotten (its session then answers webhook tools on its own stream, see
//! the [module docs](super)), so a flood of `initialize` requests costs a
//! bounded amount of memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Where one session's webhook deliveries go.
#[derive(Debug)]
pub(super) struct Hook {
    /// The `_meta.webhookUrl` of the session's `initialize`, as the policy
    /// accepted it.
    pub(super) url: String,
    /// The `X-Client-ID` of that `initialize`, sent back on deliveries as
    /// Python asyncmcp does.
    pub(super) client_id: Option<String>,
}

#[derive(Debug)]
struct Entry {
    hook: Arc<Hook>,
    used: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    tick: u64,
}

/// Session id → webhook, bounded, least recently used forgotten first.
#[derive(Debug)]
pub(super) struct Sessions {
    capacity: usize,
    table: Mutex<Table>,
}

impl Sessions {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            table: Mutex::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `hook` for `session`, forgetting the least recently used
    /// entry when the table is full.
    pub(super) fn insert(&self, session: String, hook: Hook) {
        let mut table = self.table();
        table.tick += 1;
        let used = table.tick;
        if !table.entries.contains_key(&session) && table.entries.len() >= self.capacity {
            // A scan only when full; the table is small enough (thousands)
            // that this costs less than keeping an ordered index.
            let oldest = table
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                tracing::info!(session = %oldest, "hybrid session table full: forgetting the least recently used webhook");
                table.entries.remove(&oldest);
            }
        }
        table.entries.insert(
            session,
            Entry {
                hook: Arc::new(hook),
                used,
            },
        );
    }

    /// The webhook of `session`, if it has one.
    pub(super) fn get(&self, session: &str) -> Option<Arc<Hook>> {
        let mut table = self.table();
        table.tick += 1;
        let tick = table.tick;
        let entry = table.entries.get_mut(session)?;
        entry.used = tick;
        Some(entry.hook.clone())
    }

    /// Forgets `session` (deleted, or unknown to the inner service).
    pub(super) fn forget(&self, session: &str) {
        self.table().entries.remove(session);
    }

    /// How many sessions have a webhook.
    pub(super) fn len(&self) -> usize {
        self.table().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Hook {
        Hook {
            url: url.to_owned(),
            client_id: None,
        }
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_least_recently_used() {
        let sessions = Sessions::new(2);
        sessions.insert("a".into(), hook("https://a/"));
        sessions.insert("b".into(), hook("https://b/"));
        // Using `a` makes `b` the oldest.
        assert_eq!(sessions.get("a").expect("a").url, "https://a/");
        sessions.insert("c".into(), hook("https://c/"));
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get("b").is_none());
        assert!(sessions.get("a").is_some() && sessions.get("c").is_some());
        // Replacing an entry does not evict another.
        sessions.insert("c".into(), hook("https://c2/"));
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.get("c").expect("c").url, "https://c2/");
        sessions.forget("a");
        assert!(sessions.get("a").is_none());
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn a_flood_of_sessions_stays_within_capacity() {
        let sessions = Sessions::new(100);
        for n in 0..10_000 {
            sessions.insert(format!("s{n}"), hook("https://x/"));
        }
        assert_eq!(sessions.len(), 100);
        assert!(sessions.get("s9999").is_some());
        assert!(sessions.get("s0").is_none());
    }
}

//! [`HybridBuilder`]: the settings of a [`HybridLayer`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::deliver::Calls;
use super::sessions::Sessions;
use super::{
    DEFAULT_MAX_BODY, DEFAULT_MAX_DETACHED, DEFAULT_MAX_SESSIONS, DeadLetter, HybridLayer, Shared,
    WEBHOOK_TOOL_META,
};
use crate::queue::Outbox;
use crate::queue::webhook::WebhookOutbox;

/// Builds a [`HybridLayer`].
pub struct HybridBuilder {
    outbox: WebhookOutbox,
    tools: HashSet<String>,
    max_sessions: usize,
    max_detached: usize,
    max_body: usize,
    retry_after: Duration,
    dead_letter: Option<DeadLetter>,
}

impl fmt::Debug for HybridBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridBuilder")
            .field("tools", &self.tools)
            .field("max_sessions", &self.max_sessions)
            .field("max_detached", &self.max_detached)
            .field(
                "dead_letter",
                &self.dead_letter.as_ref().map(|(_, address)| address),
            )
            .finish_non_exhaustive()
    }
}

impl HybridBuilder {
    /// The defaults, delivering through `outbox`.
    pub(super) fn new(outbox: WebhookOutbox) -> Self {
        Self {
            outbox,
            tools: HashSet::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_detached: DEFAULT_MAX_DETACHED,
            max_body: DEFAULT_MAX_BODY,
            retry_after: Duration::from_secs(1),
            dead_letter: None,
        }
    }

    /// Answers calls of these tools at the caller's webhook (by name, as
    /// Python asyncmcp's `webhook_tools`).
    pub fn webhook_tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tools.extend(tools.into_iter().map(Into::into));
        self
    }

    /// Answers calls of the tools among `tools` whose `_meta` has
    /// [`WEBHOOK_TOOL_META`] set to `true` at the caller's webhook, e.g. the
    /// tools of an rmcp `ToolRouter` (`router.list_all()`). The marker is in
    /// the tool's own definition, so clients see in `tools/list` which tools
    /// answer at their webhook.
    pub fn webhook_tools_marked<'a, I>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = &'a rmcp::model::Tool>,
    {
        for tool in tools {
            let marked = tool
                .meta
                .as_ref()
                .and_then(|meta| meta.0.get(WEBHOOK_TOOL_META))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if marked {
                self.tools.insert(tool.name.to_string());
            }
        }
        self
    }

    /// Remembers the webhooks of at most `sessions` sessions (default
    /// [`DEFAULT_MAX_SESSIONS`]); the least recently used is forgotten first.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self
    }

    /// Detaches at most `calls` webhook calls at once (default
    /// [`DEFAULT_MAX_DETACHED`]); more are refused `503`.
    pub fn max_detached(mut self, calls: usize) -> Self {
        self.max_detached = calls;
        self
    }

    /// Reads request bodies up to `bytes` (default [`DEFAULT_MAX_BODY`]);
    /// larger ones are refused `413`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The `Retry-After` of a refused call (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Sends messages that could not be delivered to `address` through
    /// `outbox`, each with a `DeadLetterReason` and the webhook as `ReplyTo`.
    pub fn dead_letter(mut self, outbox: Arc<dyn Outbox>, address: impl Into<String>) -> Self {
        self.dead_letter = Some((outbox, address.into()));
        self
    }

    /// The layer.
    pub fn build(self) -> HybridLayer {
        HybridLayer {
            shared: Arc::new(Shared {
                outbox: self.outbox,
                tools: self.tools,
                sessions: Sessions::new(self.max_sessions),
                calls: Calls::default(),
                detached: Arc::new(Semaphore::new(self.max_detached)),
                max_detached: self.max_detached,
                max_body: self.max_body,
                retry_after: self.retry_after,
                dead_letter: self.dead_letter,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::webhook::WebhookPolicy;
    use rmcp::model::{MetaObject, Tool};
    use serde_json::json;

    fn tool(name: &'static str, meta: Option<Value>) -> Tool {
        let tool = Tool::new(name, "a tool", Arc::new(serde_json::Map::new()));
        match meta {
            Some(Value::Object(meta)) => tool.with_meta(MetaObject(meta)),
            _ => tool,
        }
    }

    #[test]
    fn tools_marked_in_their_meta_are_webhook_tools() {
        let outbox = WebhookOutbox::builder(WebhookPolicy::prefixes(["https://"]))
            .build()
            .expect("an outbox");
        let tools = [
            tool("marked", Some(json!({WEBHOOK_TOOL_META: true}))),
            tool("false", Some(json!({WEBHOOK_TOOL_META: false}))),
            tool("text", Some(json!({WEBHOOK_TOOL_META: "yes"}))),
            tool("other", Some(json!({"other": true}))),
            tool("bare", None),
        ];
        let builder = HybridLayer::builder(outbox)
            .webhook_tools(["named"])
            .webhook_tools_marked(&tools);
        let mut names: Vec<&str> = builder.tools.iter().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["marked", "named"]);
    }
}

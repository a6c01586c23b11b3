//! The first page of each list call, kept until the server says it changed.
//!
//! Callers list tools far more often than a server's tools change, and each
//! list over a queue costs a round trip to the child. Only the first page
//! (no cursor) is kept; the server's `notifications/*/list_changed` drops
//! the kind it names (resource templates go with resources).

use std::sync::{Mutex, PoisonError};

use rmcp::model::{ClientRequest, ServerResult};

/// Which list a request or result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl ListKind {
    /// The kind of a first-page list request, or `None` for anything else.
    pub(crate) fn of_first_page(request: &ClientRequest) -> Option<Self> {
        let (kind, params) = match request {
            ClientRequest::ListToolsRequest(r) => (Self::Tools, r.params.as_ref()),
            ClientRequest::ListPromptsRequest(r) => (Self::Prompts, r.params.as_ref()),
            ClientRequest::ListResourcesRequest(r) => (Self::Resources, r.params.as_ref()),
            ClientRequest::ListResourceTemplatesRequest(r) => {
                (Self::ResourceTemplates, r.params.as_ref())
            }
            _ => return None,
        };
        params
            .is_none_or(|params| params.cursor.is_none())
            .then_some(kind)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The kept first pages of one downstream connection.
#[derive(Debug, Default)]
pub(crate) struct ListCache {
    pages: Mutex<[Option<ServerResult>; 4]>,
    /// Bumped by each invalidation, so that a list answered before a
    /// `list_changed` and stored after it is not kept.
    generation: Mutex<[u64; 4]>,
}

impl ListCache {
    /// The kept page of `kind`, if any.
    pub(crate) fn get(&self, kind: ListKind) -> Option<ServerResult> {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)[kind.index()].clone()
    }

    /// The generation of `kind`, read before its list is requested.
    pub(crate) fn generation(&self, kind: ListKind) -> u64 {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[kind.index()]
    }

    /// Keeps `page` for `kind`, unless the list changed since `generation`.
    pub(crate) fn store(&self, kind: ListKind, generation: u64, page: ServerResult) {
        let generations = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if generations[kind.index()] == generation {
            self.pages.lock().unwrap_or_else(PoisonError::into_inner)[kind.index()] = Some(page);
        }
    }

    /// Drops the kept page of `kind`.
    pub(crate) fn invalidate(&self, kind: ListKind) {
        let mut generations = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        generations[kind.index()] += 1;
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)[kind.index()] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ListToolsResult, PaginatedRequestParams};

    fn tools_page() -> ServerResult {
        ServerResult::ListToolsResult(ListToolsResult::default())
    }

    #[test]
    fn only_first_pages_are_lists_to_keep() {
        let first = ClientRequest::ListToolsRequest(Default::default());
        assert_eq!(ListKind::of_first_page(&first), Some(ListKind::Tools));
        let second = rmcp::model::ListToolsRequest {
            params: Some(PaginatedRequestParams::default().with_cursor(Some("2".into()))),
            ..Default::default()
        };
        assert_eq!(
            ListKind::of_first_page(&ClientRequest::ListToolsRequest(second)),
            None
        );
        let ping = ClientRequest::PingRequest(Default::default());
        assert_eq!(ListKind::of_first_page(&ping), None);
    }

    #[test]
    fn a_change_drops_the_page_and_refuses_one_listed_before_it() {
        let cache = ListCache::default();
        let before = cache.generation(ListKind::Tools);
        cache.store(ListKind::Tools, before, tools_page());
        assert!(cache.get(ListKind::Tools).is_some());
        assert!(cache.get(ListKind::Prompts).is_none());

        let listing = cache.generation(ListKind::Tools);
        cache.invalidate(ListKind::Tools);
        assert!(cache.get(ListKind::Tools).is_none());
        // Listed before the change, answered after it: not kept.
        cache.store(ListKind::Tools, listing, tools_page());
        assert!(cache.get(ListKind::Tools).is_none());
    }
}

//! Task ids derived from the request's identity.
//!
//! A replica that dies mid-task leaves its request message to reappear for
//! another replica, which must run the work again under the **same** task id
//! so the caller's `tasks/get` polling just continues. So the id is a
//! function of what identifies the request, the same things the server's
//! replay cache keys on: the caller (its `ClientId`, else its session), the
//! JSON-RPC request id and a digest of the message body. A caller that sends
//! the identical request again (a resumed pipeline) gets the same task; one
//! that reuses a request id for a different call gets a different task.
//!
//! The id is not a secret: who knows a caller's id, request and body can
//! compute it. What protects a task is that it is bound to its owner, and
//! `tasks/get|update|cancel` from anyone else is answered as if it did not
//! exist (with signed requests, the owner cannot be forged).

use rmcp::model::RequestId;
use sha2::{Digest, Sha256};

/// The task id for request `request_id` of `caller` whose message body has
/// digest `body`. Deterministic: every replica derives the same id.
pub fn derive(caller: &str, request_id: &RequestId, body: &[u8]) -> String {
    let request = match request_id {
        RequestId::Number(n) => format!("n:{n}"),
        RequestId::String(s) => format!("s:{s}"),
    };
    // Length-prefixed parts: no two different triples hash alike.
    let mut hasher = Sha256::new();
    for part in [caller.as_bytes(), request.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("task-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_request_same_id_and_any_part_changes_it() {
        let one = derive("client", &RequestId::Number(7), b"body");
        assert_eq!(one, derive("client", &RequestId::Number(7), b"body"));
        assert_ne!(one, derive("client", &RequestId::Number(8), b"body"));
        assert_ne!(one, derive("other", &RequestId::Number(7), b"body"));
        assert_ne!(one, derive("client", &RequestId::Number(7), b"other"));
        assert_ne!(
            one,
            derive("client", &RequestId::String("7".into()), b"body")
        );
        // "ab"+"c" and "a"+"bc" differ (length prefixes).
        assert_ne!(
            derive("ab", &RequestId::Number(1), b"c"),
            derive("a", &RequestId::Number(1), b"bc")
        );
        assert!(one.starts_with("task-") && one.len() == 5 + 32);
    }
}

//! Task ids derived from the request's identity.
//!
//! A replica that dies mid-task leaves its request message to reappear for
//! another replica, which must run the work again under the **same** task id
//! so the caller's `tasks/get` polling just continues. So the id is a
//! function of what identifies the request on the wire: the caller's
//! `ClientId`, its session (if any) and the JSON-RPC request id, the same
//! triple the server's replay cache keys on. It is keyed with a secret shared
//! by the replicas (the session keys, when configured) so ids cannot be
//! guessed from a caller's id; ownership is still checked on every access.

use hmac::{Hmac, Mac};
use rmcp::model::RequestId;
use sha2::{Digest, Sha256};

/// The task id for request `request_id` of `client_id` in `session`.
///
/// `secret`: bytes shared by every replica (empty: none). Deterministic:
/// every replica derives the same id for the same request.
pub fn derive(secret: &[u8], client_id: &str, session: Option<&str>, request_id: &RequestId) -> String {
    let request = match request_id {
        RequestId::Number(n) => format!("n:{n}"),
        RequestId::String(s) => format!("s:{s}"),
    };
    // Length-prefixed parts: no two different triples hash alike.
    let mut input = Vec::new();
    for part in [client_id, session.unwrap_or(""), request.as_str()] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest: Vec<u8> = if secret.is_empty() {
        Sha256::digest(&input).to_vec()
    } else {
        match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(&input);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Sha256::digest(&input).to_vec(),
        }
    };
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("task-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_request_same_id_and_any_part_changes_it() {
        let one = derive(b"k", "client", None, &RequestId::Number(7));
        assert_eq!(one, derive(b"k", "client", None, &RequestId::Number(7)));
        assert_ne!(one, derive(b"k", "client", None, &RequestId::Number(8)));
        assert_ne!(one, derive(b"k", "other", None, &RequestId::Number(7)));
        assert_ne!(one, derive(b"k", "client", Some("s"), &RequestId::Number(7)));
        assert_ne!(one, derive(b"x", "client", None, &RequestId::Number(7)));
        assert_ne!(one, derive(b"k", "client", None, &RequestId::String("7".into())));
        // "ab"+"c" and "a"+"bc" differ (length prefixes).
        assert_ne!(
            derive(b"", "ab", Some("c"), &RequestId::Number(1)),
            derive(b"", "a", Some("bc"), &RequestId::Number(1))
        );
    }
}

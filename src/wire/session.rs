//! Sealed session ids.
//!
//! Clients on the initialize-based protocol versions (2024-11-05 …
//! 2025-11-25), Python asyncmcp among them, name their reply address only in
//! `initialize` and send just a `SessionId` afterwards. A server that is
//! stateless per message must still know, on any replica, where the replies of
//! a later request go and which protocol version was negotiated. So the server
//! seals that state into the id itself:
//!
//! ```text
//! v1.<nonce>.<base64url(payload JSON)>.<base64url(HMAC-SHA256 tag)>
//! ```
//!
//! The tag covers everything before it, under a key the replicas share
//! ([`SessionKeys`]); a forged or altered id fails to open. Every character is
//! in `[\x21-\x7E]`, as Python asyncmcp requires. The payload is signed, not
//! encrypted: it holds a reply address, which the client chose and knows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const VERSION: &str = "v1";
/// The shortest key accepted, here and for [message signing](super::signing).
pub(super) const MIN_KEY_LEN: usize = 32;
/// The length of an HMAC-SHA256 tag.
pub(super) const TAG_LEN: usize = 32;

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// Where replies of this session go.
    #[serde(rename = "r")]
    pub reply_to: String,
    /// The protocol version negotiated by `initialize`.
    #[serde(rename = "v")]
    pub protocol_version: String,
    /// The client's id, when it sent one.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Why a session id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The id is not of the sealed form.
    #[error("malformed session id")]
    Malformed,
    /// The tag does not match under any configured key.
    #[error("session id signature does not verify")]
    BadSignature,
    /// A key shorter than 32 bytes was configured.
    #[error("session keys must be at least {MIN_KEY_LEN} bytes")]
    WeakKey,
}

/// The keys that seal and open session ids.
///
/// New ids are sealed with the current key; ids sealed with the previous key
/// still open, so keys can be rotated without breaking live sessions: deploy
/// `(new, Some(old))` everywhere, then drop the old key after the longest
/// session you care about.
#[derive(Clone)]
pub struct SessionKeys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys shared by the replicas of one deployment.
    pub fn new(current: Vec<u8>, previous: Option<Vec<u8>>) -> Result<Self, SessionError> {
        if current.len() < MIN_KEY_LEN || previous.as_ref().is_some_and(|k| k.len() < MIN_KEY_LEN) {
            return Err(SessionError::WeakKey);
        }
        Ok(Self { current, previous })
    }

    /// A random key for this process alone. Sessions it seals open only on
    /// this process: configure shared keys when running several replicas.
    pub fn random() -> Self {
        let mut current = Vec::with_capacity(MIN_KEY_LEN);
        current.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        current.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            current,
            previous: None,
        }
    }

    /// Seals `state` into a new session id.
    pub fn seal(&self, state: &SessionState) -> String {
        let nonce = B64.encode(uuid::Uuid::new_v4().as_bytes());
        // Serializing a struct of strings cannot fail.
        let payload = B64.encode(serde_json::to_vec(state).unwrap_or_default());
        let signed = format!("{VERSION}.{nonce}.{payload}");
        let tag = B64.encode(tag(&self.current, &signed));
        format!("{signed}.{tag}")
    }

    /// Opens a session id sealed by [`seal`](Self::seal) under either key.
    pub fn open(&self, id: &str) -> Result<SessionState, SessionError> {
        let (signed, tag_text) = id.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let mut parts = signed.split('.');
        let (Some(VERSION), Some(_nonce), Some(payload), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        let tag_bytes = B64.decode(tag_text).map_err(|_| SessionError::Malformed)?;
        if tag_bytes.len() != TAG_LEN {
            return Err(SessionError::Malformed);
        }
        let verifies = |key: &[u8]| {
            let mut mac = new_mac(key);
            mac.update(signed.as_bytes());
            mac.verify_slice(&tag_bytes).is_ok()
        };
        if !verifies(&self.current) && !self.previous.as_deref().is_some_and(verifies) {
            return Err(SessionError::BadSignature);
        }
        let payload = B64.decode(payload).map_err(|_| SessionError::Malformed)?;
        serde_json::from_slice(&payload).map_err(|_| SessionError::Malformed)
    }
}

/// An HMAC-SHA256 instance under `key` (shared with [`signing`](super::signing)).
pub(super) fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn tag(key: &[u8], signed: &str) -> Vec<u8> {
    let mut mac = new_mac(key);
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SessionState {
        SessionState {
            reply_to: "http://localhost:4566/queue/us-east-1/000000000000/replies".into(),
            protocol_version: "2025-06-18".into(),
            client_id: Some("client-1".into()),
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let keys = SessionKeys::random();
        let id = keys.seal(&state());
        assert!(id.starts_with("v1."));
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{id}");
        assert_eq!(keys.open(&id).unwrap(), state());
        assert_ne!(keys.seal(&state()), id, "each seal has its own nonce");
    }

    #[test]
    fn another_key_or_an_altered_id_is_refused() {
        let keys = SessionKeys::random();
        let id = keys.seal(&state());
        assert_eq!(
            SessionKeys::random().open(&id),
            Err(SessionError::BadSignature)
        );
        let (signed, tag) = id.rsplit_once('.').unwrap();
        let forged_payload = B64.encode(
            serde_json::to_vec(&SessionState {
                reply_to: "http://evil/queue".into(),
                ..state()
            })
            .unwrap(),
        );
        let mut parts: Vec<&str> = signed.split('.').collect();
        parts[2] = &forged_payload;
        let forged = format!("{}.{tag}", parts.join("."));
        assert_eq!(keys.open(&forged), Err(SessionError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let keys = SessionKeys::random();
        for id in [
            "",
            "abc",
            "v1.a.b",
            "v2.a.b.c",
            "v1.a.b.c.d",
            "v1.n.!!!.AAAA",
            "0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(keys.open(id), Err(SessionError::Malformed), "{id}");
        }
    }

    #[test]
    fn rotation_opens_ids_sealed_with_the_previous_key() {
        let old = SessionKeys::new(vec![1; 32], None).unwrap();
        let id = old.seal(&state());
        let rotated = SessionKeys::new(vec![2; 32], Some(vec![1; 32])).unwrap();
        assert_eq!(rotated.open(&id).unwrap(), state());
        let retired = SessionKeys::new(vec![2; 32], None).unwrap();
        assert_eq!(retired.open(&id), Err(SessionError::BadSignature));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            SessionKeys::new(vec![0; 16], None).unwrap_err(),
            SessionError::WeakKey
        );
    }
}

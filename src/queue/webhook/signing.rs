//! Standard Webhooks signatures: [`WebhookSigner`] signs what a webhook
//! outbox POSTs, [`WebhookVerifier`] checks it where it is received.
//!
//! Each delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds)
//! and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`),
//! as the [Standard Webhooks](https://www.standardwebhooks.com/) convention
//! and its `standardwebhooks` crate define. The id names the message, not
//! the attempt: retries, and the server's replays of one response, carry
//! the same id, so a receiver keeps the first and drops the rest.
//!
//! What an attacker who can reach the receiver could try, and what stops it:
//!
//! * **Forging or changing a delivery** (another result, another session):
//!   the signature covers id, timestamp and body; without the secret none
//!   can be made, and a changed byte fails the check.
//! * **Replaying a captured delivery** later: a timestamp outside the
//!   tolerance (5 minutes by default, either way) is refused; within it,
//!   the id has been seen and is refused as a duplicate.
//! * **Flooding the duplicate memory** to push real ids out: ids are kept
//!   only for deliveries whose signature checked, and only until their
//!   timestamp leaves the tolerance, in a bounded table.
//!
//! Signing is off by default only because Python asyncmcp's webhook
//! transport neither sends nor checks these headers; turn it on wherever
//! both ends are this crate.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook, WebhookError,
};

/// The default tolerance on `webhook-timestamp`, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// How many delivery ids a verifier remembers by default.
pub const DEFAULT_REMEMBERED_IDS: usize = 100_000;

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid webhook secret (expected `whsec_` and base64): {0}")]
pub struct SecretError(#[source] WebhookError);

/// Signs outgoing deliveries with one secret.
#[derive(Clone)]
pub struct WebhookSigner {
    webhook: Arc<Webhook>,
}

impl fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSigner { .. }")
    }
}

/// Reads a secret as Standard Webhooks writes it: `whsec_` then base64.
fn webhook(secret: &str) -> Result<Webhook, SecretError> {
    Webhook::new(secret).map_err(SecretError)
}

/// The current Unix time in seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

impl WebhookSigner {
    /// A signer with `secret` (`whsec_<base64>`, or bare base64).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self {
            webhook: Arc::new(webhook(secret)?),
        })
    }

    /// The three headers of a delivery of `body` as message `id`, sent at
    /// `timestamp` (Unix seconds).
    pub fn headers(
        &self,
        id: &str,
        timestamp: i64,
        body: &str,
    ) -> Result<[(&'static str, String); 3], SecretError> {
        let signature = self
            .webhook
            .sign(id, timestamp, body.as_bytes())
            .map_err(SecretError)?;
        Ok([
            (HEADER_WEBHOOK_ID, id.to_owned()),
            (HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string()),
            (HEADER_WEBHOOK_SIGNATURE, signature),
        ])
    }
}

/// Why a received delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A signature header is missing or not text: an unsigned delivery.
    #[error("missing or unreadable {0} header: the delivery is not signed")]
    Unsigned(&'static str),
    /// `webhook-timestamp` is not a number.
    #[error("webhook-timestamp is not a Unix time")]
    BadTimestamp,
    /// The timestamp is outside the tolerance: stale, or from the future.
    #[error("webhook-timestamp is {skew} s away from now, beyond the {tolerance} s tolerance")]
    Stale {
        /// Seconds between the timestamp and now.
        skew: i64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// No signature matches: changed on the way, or another secret.
    #[error("webhook-signature does not match the delivery")]
    BadSignature,
    /// A delivery with this id was accepted already.
    #[error("webhook-id {0:?} was delivered already")]
    Duplicate(String),
}

/// Checks received deliveries: signed with the secret, timestamp within the
/// tolerance, id not seen before (see the [module docs](self)).
pub struct WebhookVerifier {
    webhook: Webhook,
    /// The secret being rotated out, still accepted (see
    /// [`with_previous`](Self::with_previous)).
    previous: Option<Webhook>,
    tolerance: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("tolerance", &self.tolerance)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Accepted ids and when each may be forgotten (Unix seconds), oldest first.
#[derive(Default)]
struct Seen {
    until: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl WebhookVerifier {
    /// A verifier for `secret` with the [`DEFAULT_TOLERANCE`], remembering
    /// up to [`DEFAULT_REMEMBERED_IDS`] ids.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self {
            webhook: webhook(secret)?,
            previous: None,
            tolerance: DEFAULT_TOLERANCE,
            capacity: DEFAULT_REMEMBERED_IDS,
            seen: Mutex::default(),
        })
    }

    /// Also accepts deliveries signed with `secret`, the one being rotated
    /// out: during a rotation the receiver takes both, the senders move to
    /// the new secret one by one, then the old one is dropped. Signing always
    /// uses one secret ([`WebhookSigner`]).
    pub fn with_previous(mut self, secret: &str) -> Result<Self, SecretError> {
        self.previous = Some(webhook(secret)?);
        Ok(self)
    }

    /// Accepts timestamps within `tolerance` of now, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Remembers at most `capacity` ids; past it the oldest are forgotten
    /// (a replay of one of them within the tolerance would then pass).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Checks a delivery of `body` with `headers` now; returns its id.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, VerifyError> {
        self.verify_at(headers, body, unix_now())
    }

    /// [`verify`](Self::verify) as of `now` (Unix seconds).
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<String, VerifyError> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or(VerifyError::Unsigned(name))
        };
        let id = header(HEADER_WEBHOOK_ID)?;
        let timestamp = header(HEADER_WEBHOOK_TIMESTAMP)?;
        let signatures = header(HEADER_WEBHOOK_SIGNATURE)?;
        let timestamp: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        let skew = now.saturating_sub(timestamp);
        if skew.saturating_abs() > tolerance {
            return Err(VerifyError::Stale {
                skew,
                tolerance: self.tolerance.as_secs(),
            });
        }
        // The crate's own `verify` fixes its tolerance at 5 minutes; the
        // signature is computed by it and compared here, in constant time.
        let mut matches = false;
        for webhook in std::iter::once(&self.webhook).chain(self.previous.as_ref()) {
            let expected = webhook
                .sign(id, timestamp, body)
                .map_err(|_| VerifyError::BadSignature)?;
            matches |= signatures
                .split(' ')
                .any(|candidate| constant_time_eq(candidate.as_bytes(), expected.as_bytes()));
        }
        if !matches {
            return Err(VerifyError::BadSignature);
        }
        self.remember(id, timestamp.saturating_add(tolerance), now)?;
        Ok(id.to_owned())
    }

    /// Records `id` until `until`, or refuses it as a duplicate.
    fn remember(&self, id: &str, until: i64, now: i64) -> Result<(), VerifyError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Roughly in expiry order (timestamps vary within the tolerance): an
        // expired entry behind a live one waits its turn, within capacity.
        while seen
            .order
            .front()
            .is_some_and(|(expires, _)| *expires < now)
        {
            seen.forget_oldest();
        }
        if seen.until.get(id).is_some_and(|at| *at >= now) {
            return Err(VerifyError::Duplicate(id.chars().take(100).collect()));
        }
        while seen.order.len() >= self.capacity {
            seen.forget_oldest();
        }
        seen.until.insert(id.to_owned(), until);
        seen.order.push_back((until, id.to_owned()));
        Ok(())
    }
}

impl Seen {
    fn forget_oldest(&mut self) {
        if let Some((expires, id)) = self.order.pop_front()
            && self.until.get(&id) == Some(&expires)
        {
            self.until.remove(&id);
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signed(id: &str, timestamp: i64, body: &str) -> HeaderMap {
        let signer = WebhookSigner::new(SECRET).expect("a secret");
        let mut headers = HeaderMap::new();
        for (name, value) in signer.headers(id, timestamp, body).expect("signed") {
            headers.insert(name, value.parse().expect("a header value"));
        }
        headers
    }

    #[test]
    fn a_signed_delivery_is_accepted_once() {
        let verifier = WebhookVerifier::new(SECRET).expect("a secret");
        let now = unix_now();
        let headers = signed("msg_1", now, "{\"id\":1}");
        assert_eq!(
            verifier.verify(&headers, b"{\"id\":1}"),
            Ok("msg_1".to_owned())
        );
        assert_eq!(
            verifier.verify(&headers, b"{\"id\":1}"),
            Err(VerifyError::Duplicate("msg_1".to_owned()))
        );
        // Interoperates with the crate's own verifier.
        let reference = Webhook::new(SECRET).expect("a secret");
        reference
            .verify(b"{\"id\":1}", &headers)
            .expect("verified by the crate");
    }

    #[test]
    fn a_previous_secret_is_accepted_during_a_rotation_and_only_it() {
        const NEW: &str = "whsec_bmV3LXNlY3JldC1hZnRlci10aGUtcm90YXRpb24=";
        const OTHER: &str = "whsec_c2VjcmV0LXR3bw==";
        let now = unix_now();
        let rotating = WebhookVerifier::new(NEW)
            .and_then(|verifier| verifier.with_previous(SECRET))
            .expect("secrets");
        let old = signed("msg_old", now, "{}");
        assert_eq!(rotating.verify(&old, b"{}"), Ok("msg_old".to_owned()));
        let new_signer = WebhookSigner::new(NEW).expect("a secret");
        let mut fresh = HeaderMap::new();
        for (name, value) in new_signer.headers("msg_new", now, "{}").expect("signed") {
            fresh.insert(name, value.parse().expect("a header value"));
        }
        assert_eq!(rotating.verify(&fresh, b"{}"), Ok("msg_new".to_owned()));
        let foreign = WebhookSigner::new(OTHER).expect("a secret");
        let mut forged = HeaderMap::new();
        for (name, value) in foreign.headers("msg_x", now, "{}").expect("signed") {
            forged.insert(name, value.parse().expect("a header value"));
        }
        assert_eq!(
            rotating.verify(&forged, b"{}"),
            Err(VerifyError::BadSignature)
        );
        // Once rotated, the old secret is refused.
        let rotated = WebhookVerifier::new(NEW).expect("a secret");
        assert_eq!(
            rotated.verify(&signed("msg_late", now, "{}"), b"{}"),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn unsigned_tampered_stale_and_foreign_deliveries_are_refused() {
        let verifier = WebhookVerifier::new(SECRET).expect("a secret");
        let now = unix_now();
        assert_eq!(
            verifier.verify(&HeaderMap::new(), b"{}"),
            Err(VerifyError::Unsigned("webhook-id"))
        );
        let headers = signed("msg_2", now, "{\"id\":2}");
        assert_eq!(
            verifier.verify(&headers, b"{\"id\":3}"),
            Err(VerifyError::BadSignature)
        );
        let old = signed("msg_3", now - 301, "{}");
        assert!(matches!(
            verifier.verify(&old, b"{}"),
            Err(VerifyError::Stale { .. })
        ));
        let future = signed("msg_4", now + 301, "{}");
        assert!(matches!(
            verifier.verify(&future, b"{}"),
            Err(VerifyError::Stale { .. })
        ));
        let other = WebhookVerifier::new("whsec_c2VjcmV0LXR3bw==").expect("a secret");
        assert_eq!(
            other.verify(&headers, b"{\"id\":2}"),
            Err(VerifyError::BadSignature)
        );
        // A refused delivery is not remembered: the genuine one still passes.
        assert_eq!(
            verifier.verify(&headers, b"{\"id\":2}"),
            Ok("msg_2".to_owned())
        );
    }

    #[test]
    fn ids_are_forgotten_after_the_tolerance_and_beyond_the_capacity() {
        let verifier = WebhookVerifier::new(SECRET)
            .expect("a secret")
            .with_tolerance(Duration::from_secs(10))
            .with_capacity(2);
        let t = 1_000_000;
        let a = signed("a", t, "x");
        assert!(verifier.verify_at(&a, b"x", t).is_ok());
        assert!(matches!(
            verifier.verify_at(&a, b"x", t + 5),
            Err(VerifyError::Duplicate(_))
        ));
        // Past the tolerance it is stale anyway, and its id forgotten.
        assert!(matches!(
            verifier.verify_at(&a, b"x", t + 11),
            Err(VerifyError::Stale { .. })
        ));
        for id in ["b", "c", "d"] {
            assert!(
                verifier
                    .verify_at(&signed(id, t + 20, "x"), b"x", t + 20)
                    .is_ok()
            );
        }
        let seen = verifier.seen.lock().expect("not poisoned");
        assert!(seen.until.len() <= 2 && seen.order.len() <= 2, "bounded");
        assert!(seen.until.contains_key("d"));
    }
}

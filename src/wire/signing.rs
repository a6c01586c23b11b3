//! Optional message signing (asyncmcp extension).
//!
//! Queue policies decide who may write to a queue. Where that is not enough
//! (a queue several parties can write to, or a path through SNS whose envelope
//! signatures are not checked), peers that share a key can sign every message
//! they send and refuse those that do not verify. A signed message carries
//! one more attribute, [`Signature`](super::attr::SIGNATURE):
//!
//! ```text
//! v1.<base64url, no padding, of the 32-byte HMAC-SHA256 tag>
//! ```
//!
//! # The bytes signed
//!
//! The tag is HMAC-SHA256, under the sender's key, of this byte string, in
//! which `u64(n)` is `n` as 8 bytes big-endian and `field(x)` is
//! `u64(byte length of x) || x`:
//!
//! ```text
//! field("v1")
//! u64(number of attributes signed)
//! for each attribute except Signature, in ascending byte order of the names:
//!     field(name) || field(data type) || field(value)
//! field(body)
//! ```
//!
//! * Every text is taken as its UTF-8 bytes, exactly as carried (no
//!   normalization; a `Number` value is its decimal text as sent).
//! * The data type is `String` or `Number`, the SQS data type of the
//!   attribute, so changing only the type breaks the signature.
//! * Every attribute but `Signature` itself is signed, `Timestamp` included,
//!   so none can be altered, added or removed; attribute names are unique, so
//!   the order is total. FIFO message group and deduplication ids are not
//!   attributes and are not signed.
//!
//! Signing adds an attribute: a signed message must still carry at most
//! [`MAX_ATTRIBUTES`](crate::queue::MAX_ATTRIBUTES) (10). [`SigningKeys::sign`]
//! does not check it; the outboxes refuse a message with more where a broker
//! would drop it. Anything that adds an attribute after signing invalidates
//! the signature.
//!
//! # Keys
//!
//! [`SigningKeys`] hold a current key, which signs, and optionally a previous
//! one, which still verifies. Servers and clients each sign and verify, so to
//! rotate from `old` to `new` deploy on every peer first `(old, Some(new))`
//! (accepts the new key before anyone signs with it), then `(new, Some(old))`,
//! then, once no message signed with `old` can still be in flight,
//! `(new, None)`. Peers one step apart accept each other's messages.
//!
//! # Freshness
//!
//! A signature proves who sent a message, not when: a captured signed
//! request could be sent again later. Its `Timestamp` is signed too, so a
//! receiver can refuse signed messages sent too long ago ([`check_fresh`]);
//! servers do, by default for messages older than 15 minutes (see
//! `QueueServerBuilder::signature_max_age`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::attr;
use super::session::{MIN_KEY_LEN, TAG_LEN, new_mac};
use crate::queue::{AttributeValue, QueueMessage};

const VERSION: &str = "v1";

/// Why a message's signature was refused, or keys were.
///
/// The messages say nothing about the keys or the expected tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The message has no `Signature` attribute.
    #[error("message is not signed")]
    Missing,
    /// The `Signature` attribute is not of the form `v1.<tag>`.
    #[error("malformed message signature")]
    Malformed,
    /// The signature does not verify under any configured key.
    #[error("message signature does not verify")]
    Mismatch,
    /// A key shorter than 32 bytes was configured.
    #[error("signing keys must be at least {MIN_KEY_LEN} bytes")]
    WeakKey,
}

/// The keys that sign and verify messages.
///
/// Messages are signed with the current key; signatures made with the
/// previous key still verify, so keys can be rotated (see the
/// [module docs](self): `(old, Some(new))`, then `(new, Some(old))`, then
/// `(new, None)`, each on every peer).
#[derive(Clone)]
pub struct SigningKeys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Keys shared by the peers that sign and verify: each at least 32 bytes.
    pub fn new(
        current: impl Into<Vec<u8>>,
        previous: Option<Vec<u8>>,
    ) -> Result<Self, SigningError> {
        let current = current.into();
        if current.len() < MIN_KEY_LEN || previous.as_ref().is_some_and(|k| k.len() < MIN_KEY_LEN) {
            return Err(SigningError::WeakKey);
        }
        Ok(Self { current, previous })
    }

    /// Signs `message` with the current key, setting its `Signature`
    /// attribute (replacing any it had). A message without a `Timestamp`
    /// (one sent with [lean detail](crate::wire::Detail::Lean)) gets one
    /// first, so that its receiver can check its age
    /// ([`check_fresh`]). Does not check the attribute count.
    pub fn sign(&self, message: &mut QueueMessage) {
        message
            .attributes
            .entry(attr::TIMESTAMP.to_owned())
            .or_insert_with(|| AttributeValue::Number(super::codec::now_text()));
        let tag = mac(&self.current, message).finalize().into_bytes();
        message.attributes.insert(
            attr::SIGNATURE.to_owned(),
            AttributeValue::String(format!("{VERSION}.{}", B64.encode(tag))),
        );
    }

    /// Checks the `Signature` attribute of `message` against its body and
    /// other attributes, under the current or the previous key, in constant
    /// time.
    pub fn verify(&self, message: &QueueMessage) -> Result<(), SigningError> {
        let text = match message.attributes.get(attr::SIGNATURE) {
            None => return Err(SigningError::Missing),
            Some(AttributeValue::String(text)) => text,
            Some(AttributeValue::Number(_)) => return Err(SigningError::Malformed),
        };
        let tag = text
            .strip_prefix(VERSION)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|tag| B64.decode(tag).ok())
            .filter(|tag| tag.len() == TAG_LEN)
            .ok_or(SigningError::Malformed)?;
        let verifies = |key: &[u8]| mac(key, message).verify_slice(&tag).is_ok();
        if verifies(&self.current) || self.previous.as_deref().is_some_and(verifies) {
            Ok(())
        } else {
            Err(SigningError::Mismatch)
        }
    }
}

/// An HMAC under `key` fed with the bytes signed for `message`.
fn mac(key: &[u8], message: &QueueMessage) -> Hmac<Sha256> {
    let mut mac = new_mac(key);
    signed_bytes(message, |bytes| mac.update(bytes));
    mac
}

/// Writes the bytes signed for `message` (see the module docs) to `out`.
fn signed_bytes(message: &QueueMessage, mut out: impl FnMut(&[u8])) {
    fn field(out: &mut impl FnMut(&[u8]), bytes: &[u8]) {
        out(&(bytes.len() as u64).to_be_bytes());
        out(bytes);
    }
    let signed = || {
        message
            .attributes
            .iter()
            .filter(|(name, _)| name.as_str() != attr::SIGNATURE)
    };
    field(&mut out, VERSION.as_bytes());
    out(&(signed().count() as u64).to_be_bytes());
    // `Attributes` is a BTreeMap of `String`s: iteration is in ascending
    // byte order of the names.
    for (name, value) in signed() {
        let data_type = match value {
            AttributeValue::String(_) => "String",
            AttributeValue::Number(_) => "Number",
        };
        field(&mut out, name.as_bytes());
        field(&mut out, data_type.as_bytes());
        field(&mut out, value.as_str().as_bytes());
    }
    field(&mut out, message.body.as_bytes());
}

/// How a peer signs what it sends and checks what it receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Signing {
    /// Keys that sign every message sent and verify those received.
    pub keys: SigningKeys,
    /// Whether a received message without a signature is refused. One whose
    /// signature does not verify is refused either way.
    pub required: bool,
}

impl Signing {
    /// Signs with `keys` and refuses every message that is not signed with
    /// them.
    pub fn new(keys: SigningKeys) -> Self {
        Self {
            keys,
            required: true,
        }
    }

    /// Also lets through messages that carry no signature at all (one whose
    /// signature does not verify is still refused): for a rollout, while
    /// some peers do not sign yet.
    pub fn allow_unsigned(mut self) -> Self {
        self.required = false;
        self
    }

    /// Checks a received message (out of any SNS envelope): `Ok` when its
    /// signature verifies, or when it has none and none is required.
    pub fn check(&self, message: &QueueMessage) -> Result<(), SigningError> {
        match self.keys.verify(message) {
            Err(SigningError::Missing) if !self.required => Ok(()),
            other => other,
        }
    }
}

/// Why a signed message is refused as not fresh.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StaleMessage {
    /// The message has no readable `Timestamp` (a signed message must say
    /// when it was sent).
    #[error("signed message has no readable Timestamp")]
    NoTimestamp,
    /// It was sent longer ago than allowed.
    #[error("signed message was sent {age_seconds:.0} s ago, over the {max_age_seconds} s allowed")]
    TooOld {
        /// How long ago it was sent, in seconds.
        age_seconds: f64,
        /// The most allowed, in seconds.
        max_age_seconds: u64,
    },
    /// It claims to be sent later than the allowed clock skew from now.
    #[error("signed message claims to be sent {ahead_seconds:.0} s in the future")]
    FromTheFuture {
        /// How far ahead of this clock its `Timestamp` is, in seconds.
        ahead_seconds: f64,
    },
}

/// How far ahead of the receiver's clock a sender's clock may be.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Checks that `message` (whose signature has verified, so its `Timestamp`
/// is the sender's) was sent at most `max_age` before `now`, and not more
/// than [`MAX_CLOCK_SKEW`] after it.
pub fn check_fresh(
    message: &QueueMessage,
    now: std::time::SystemTime,
    max_age: std::time::Duration,
) -> Result<(), StaleMessage> {
    let sent = message
        .attribute(attr::TIMESTAMP)
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite())
        .ok_or(StaleMessage::NoTimestamp)?;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let age = now - sent;
    if age > max_age.as_secs_f64() {
        return Err(StaleMessage::TooOld {
            age_seconds: age,
            max_age_seconds: max_age.as_secs(),
        });
    }
    if -age > MAX_CLOCK_SKEW.as_secs_f64() {
        return Err(StaleMessage::FromTheFuture {
            ahead_seconds: -age,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_read_off_the_timestamp() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let at = |text: &str| {
            let mut message = QueueMessage::new("{}");
            message.attributes.insert(
                attr::TIMESTAMP.to_owned(),
                AttributeValue::Number(text.to_owned()),
            );
            message
        };
        let max = std::time::Duration::from_secs(60);
        assert_eq!(check_fresh(&at("1000000.000"), now, max), Ok(()));
        assert_eq!(check_fresh(&at("999940.5"), now, max), Ok(()));
        assert!(matches!(
            check_fresh(&at("999939"), now, max),
            Err(StaleMessage::TooOld { .. })
        ));
        assert_eq!(
            check_fresh(&at("1000299"), now, max),
            Ok(()),
            "skew allowed"
        );
        assert!(matches!(
            check_fresh(&at("1000301"), now, max),
            Err(StaleMessage::FromTheFuture { .. })
        ));
        for bad in ["", "soon", "NaN", "inf"] {
            assert_eq!(
                check_fresh(&at(bad), now, max),
                Err(StaleMessage::NoTimestamp),
                "{bad}"
            );
        }
        assert_eq!(
            check_fresh(&QueueMessage::new("{}"), now, max),
            Err(StaleMessage::NoTimestamp)
        );
    }

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> SigningKeys {
        SigningKeys::new(*KEY, None).unwrap()
    }

    fn message() -> QueueMessage {
        let mut message = QueueMessage::new(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .with_string(attr::MESSAGE_TYPE, attr::JSONRPC)
            .with_string(attr::REQUEST_ID, "1")
            .with_string(attr::METHOD, "ping");
        message.attributes.insert(
            attr::TIMESTAMP.to_owned(),
            AttributeValue::Number("1763779200.125".to_owned()),
        );
        message
    }

    fn signed() -> QueueMessage {
        let mut message = message();
        keys().sign(&mut message);
        message
    }

    fn with_signature(text: &str) -> QueueMessage {
        message().with_string(attr::SIGNATURE, text)
    }

    #[test]
    fn a_signed_message_verifies() {
        let message = signed();
        let text = message.attribute(attr::SIGNATURE).unwrap();
        assert!(text.starts_with("v1."), "{text}");
        assert_eq!(text.len(), 3 + 43, "{text}");
        assert_eq!(keys().verify(&message), Ok(()));
        let mut again = message.clone();
        keys().sign(&mut again);
        assert_eq!(again, message, "re-signing ignores the old signature");
    }

    #[test]
    fn signing_stamps_a_message_without_a_timestamp_and_covers_it() {
        let mut lean = QueueMessage::new("{}").with_string(attr::CLIENT_ID, "c");
        keys().sign(&mut lean);
        let stamped = lean
            .attribute(attr::TIMESTAMP)
            .unwrap_or_default()
            .to_owned();
        let now = std::time::SystemTime::now();
        assert_eq!(
            check_fresh(&lean, now, std::time::Duration::from_secs(60)),
            Ok(()),
            "{stamped}"
        );
        assert_eq!(keys().verify(&lean), Ok(()));
        // The stamp is signed: moving it breaks the signature.
        let mut moved = lean.clone();
        moved.attributes.insert(
            attr::TIMESTAMP.to_owned(),
            AttributeValue::Number("1".to_owned()),
        );
        assert!(keys().verify(&moved).is_err());
    }

    #[test]
    fn known_answer() {
        assert_eq!(
            signed().attribute(attr::SIGNATURE),
            Some("v1.uF9GFFHD946Z8WJVrxn8vUwEXtl9WdZubcX-HKZqMUY")
        );
    }

    #[test]
    fn the_bytes_signed_are_as_documented() {
        let mut message = QueueMessage::new("{}").with_string("B", "x");
        message
            .attributes
            .insert("A".to_owned(), AttributeValue::Number("7".to_owned()));
        message.attributes.insert(
            attr::SIGNATURE.to_owned(),
            AttributeValue::String("v1.x".to_owned()),
        );
        let mut bytes = Vec::new();
        signed_bytes(&message, |b| bytes.extend_from_slice(b));
        let field = |text: &str| {
            let mut out = (text.len() as u64).to_be_bytes().to_vec();
            out.extend_from_slice(text.as_bytes());
            out
        };
        let expected = [
            field("v1"),
            2u64.to_be_bytes().to_vec(),
            field("A"),
            field("Number"),
            field("7"),
            field("B"),
            field("String"),
            field("x"),
            field("{}"),
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_changed_body_fails() {
        let mut message = signed();
        message.body = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.to_owned();
        assert_eq!(keys().verify(&message), Err(SigningError::Mismatch));
    }

    #[test]
    fn a_changed_added_or_removed_attribute_fails() {
        let changed = signed().with_string(attr::METHOD, "tools/call");
        assert_eq!(keys().verify(&changed), Err(SigningError::Mismatch));

        let added = signed().with_string(attr::REPLY_TO, "memory://evil");
        assert_eq!(keys().verify(&added), Err(SigningError::Mismatch));

        let mut removed = signed();
        removed.attributes.remove(attr::REQUEST_ID);
        assert_eq!(keys().verify(&removed), Err(SigningError::Mismatch));

        let mut retyped = signed();
        retyped.attributes.insert(
            attr::REQUEST_ID.to_owned(),
            AttributeValue::Number("1".to_owned()),
        );
        assert_eq!(keys().verify(&retyped), Err(SigningError::Mismatch));
    }

    #[test]
    fn a_changed_timestamp_fails() {
        let mut message = signed();
        message.attributes.insert(
            attr::TIMESTAMP.to_owned(),
            AttributeValue::Number("1763779999.125".to_owned()),
        );
        assert_eq!(keys().verify(&message), Err(SigningError::Mismatch));
    }

    #[test]
    fn another_key_fails() {
        let other = SigningKeys::new(vec![7; 32], None).unwrap();
        assert_eq!(other.verify(&signed()), Err(SigningError::Mismatch));
    }

    #[test]
    fn a_missing_signature_fails() {
        assert_eq!(keys().verify(&message()), Err(SigningError::Missing));
    }

    #[test]
    fn truncated_or_garbage_signatures_are_malformed() {
        let good = signed().attribute(attr::SIGNATURE).unwrap().to_owned();
        let tag = good.strip_prefix("v1.").unwrap();
        for text in [
            "",
            "v1",
            "v1.",
            "v1.AAAA",
            &good[..good.len() - 1],
            &good[..good.len() - 4],
            &format!("v2.{tag}"),
            &format!("v1.{tag}="),
            &format!("v1.{tag}AAAA"),
            &format!("v1{tag}"),
            "v1.!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "garbage",
        ] {
            assert_eq!(
                keys().verify(&with_signature(text)),
                Err(SigningError::Malformed),
                "{text:?}"
            );
        }
        let mut as_number = message();
        as_number
            .attributes
            .insert(attr::SIGNATURE.to_owned(), AttributeValue::Number(good));
        assert_eq!(keys().verify(&as_number), Err(SigningError::Malformed));
    }

    #[test]
    fn rotation_verifies_signatures_of_the_previous_key() {
        let mut old = message();
        SigningKeys::new(vec![1; 32], None).unwrap().sign(&mut old);
        let rotated = SigningKeys::new(vec![2; 32], Some(vec![1; 32])).unwrap();
        assert_eq!(rotated.verify(&old), Ok(()));
        let retired = SigningKeys::new(vec![2; 32], None).unwrap();
        assert_eq!(retired.verify(&old), Err(SigningError::Mismatch));

        let mut fresh = message();
        rotated.sign(&mut fresh);
        assert_eq!(retired.verify(&fresh), Ok(()), "signs with the current key");
    }

    fn signing(required: bool) -> Signing {
        let signing = Signing::new(keys());
        assert!(signing.required);
        if required {
            signing
        } else {
            signing.allow_unsigned()
        }
    }

    /// A tampered message, one signed with another key and one with a
    /// malformed signature: refused whether signatures are required or not.
    fn bad_messages() -> [(QueueMessage, SigningError); 3] {
        let mut tampered = signed();
        tampered.body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned();
        let mut foreign = message();
        SigningKeys::new(vec![7; 32], None)
            .unwrap()
            .sign(&mut foreign);
        [
            (tampered, SigningError::Mismatch),
            (foreign, SigningError::Mismatch),
            (with_signature("v1.AAAA"), SigningError::Malformed),
        ]
    }

    #[test]
    fn check_when_required_refuses_unsigned_and_bad_messages() {
        let check = signing(true);
        assert_eq!(check.check(&signed()), Ok(()));
        assert_eq!(check.check(&message()), Err(SigningError::Missing));
        for (message, error) in bad_messages() {
            assert_eq!(check.check(&message), Err(error));
        }
    }

    #[test]
    fn check_when_not_required_excuses_only_a_missing_signature() {
        let check = signing(false);
        assert_eq!(check.check(&signed()), Ok(()));
        assert_eq!(check.check(&message()), Ok(()), "unsigned is accepted");
        for (message, error) in bad_messages() {
            assert_eq!(check.check(&message), Err(error), "{message:?}");
        }
    }

    #[test]
    fn short_keys_are_refused_and_keys_are_not_printed() {
        assert_eq!(
            SigningKeys::new(vec![0; 31], None).unwrap_err(),
            SigningError::WeakKey
        );
        assert_eq!(
            SigningKeys::new(vec![0; 32], Some(vec![0; 16])).unwrap_err(),
            SigningError::WeakKey
        );
        assert_eq!(format!("{:?}", keys()), "SigningKeys { .. }");
    }
}

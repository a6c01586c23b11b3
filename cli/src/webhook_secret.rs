//! The Standard Webhooks secret of the webhook forms of `serve` and `proxy`.
//!
//! One variable, [`SECRET_VAR`], never a flag (`ps` and `/proc/PID/cmdline`
//! show flags to every user of the machine). When it is set, both ends
//! sign what they POST and check what they receive: `serve` signs the
//! replies it POSTs to webhooks and refuses unsigned requests at
//! `--webhook-listen`; `proxy --webhook-server` signs its requests and
//! refuses unsigned replies at its receiver.
//!
//! There is no separate switch to require signatures: a process holding the
//! secret that still took unsigned requests would give the appearance of
//! protection and none of it (a forger simply leaves the headers out). An
//! unset variable is the one way to talk to peers that sign nothing, such
//! as Python asyncmcp 0.2.1.
//!
//! Rotation: [`PREVIOUS_VAR`] holds the secret being rotated out, which is
//! still accepted on what this process receives (it never signs with it).
//! Set the new secret on the receivers with the old one as previous, then
//! move the senders to the new secret, then drop the previous one.

use std::fmt;

use asyncmcp::queue::webhook::{WebhookSigner, WebhookVerifier};
use base64::Engine;

/// The variable holding the secret.
pub(crate) const SECRET_VAR: &str = "ASYNCMCP_WEBHOOK_SECRET";

/// The variable holding the secret being rotated out (accepted, not used
/// to sign).
pub(crate) const PREVIOUS_VAR: &str = "ASYNCMCP_WEBHOOK_SECRET_PREVIOUS";

/// The shortest secret taken, in bytes: the Standard Webhooks
/// specification asks for 24 to 64 random bytes.
const MIN_SECRET_BYTES: usize = 24;

/// The secret could not be used. Never shows its value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// Not `whsec_` followed by standard base64.
    #[error(
        "{0} is not a Standard Webhooks secret: expected `whsec_` followed by base64 \
         (e.g. `whsec_$(openssl rand -base64 32)`)"
    )]
    Encoding(&'static str),
    /// Fewer than [`MIN_SECRET_BYTES`] bytes.
    #[error("{0} holds {1} bytes; at least {MIN_SECRET_BYTES} are needed")]
    Short(&'static str, usize),
    /// A previous secret with no current one.
    #[error("{PREVIOUS_VAR} is set but {SECRET_VAR} is not")]
    PreviousAlone,
}

/// A checked secret: the signer of what this process POSTs, and the
/// verifier of what it receives (one per process: it remembers ids).
pub(crate) struct WebhookSecret {
    pub(crate) signer: WebhookSigner,
    pub(crate) verifier: WebhookVerifier,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret { .. }")
    }
}

impl WebhookSecret {
    /// The secret in [`SECRET_VAR`], if set (and not blank), with the one
    /// in [`PREVIOUS_VAR`] also accepted when that is set.
    pub(crate) fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SecretError> {
        let read = |name| var(name).filter(|text: &String| !text.trim().is_empty());
        let previous = read(PREVIOUS_VAR);
        let Some(text) = read(SECRET_VAR) else {
            return match previous {
                Some(_) => Err(SecretError::PreviousAlone),
                None => Ok(None),
            };
        };
        let text = checked(SECRET_VAR, text.trim())?;
        let signer = WebhookSigner::new(text).map_err(|_| SecretError::Encoding(SECRET_VAR))?;
        let mut verifier =
            WebhookVerifier::new(text).map_err(|_| SecretError::Encoding(SECRET_VAR))?;
        if let Some(previous) = &previous {
            let previous = checked(PREVIOUS_VAR, previous.trim())?;
            verifier = verifier
                .with_previous(previous)
                .map_err(|_| SecretError::Encoding(PREVIOUS_VAR))?;
        }
        Ok(Some(Self { signer, verifier }))
    }
}

/// `text` of variable `var`, read as the `standardwebhooks` crate reads it
/// (`whsec_` optional, standard base64), with its length checked.
fn checked<'a>(var: &'static str, text: &'a str) -> Result<&'a str, SecretError> {
    let encoded = text.strip_prefix("whsec_").unwrap_or(text);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| SecretError::Encoding(var))?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretError::Short(var, bytes.len()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name| (name == SECRET_VAR).then(|| value.to_owned())
    }

    #[test]
    fn a_secret_is_read_checked_and_never_shown() {
        assert!(WebhookSecret::from_env(|_| None).expect("unset").is_none());
        assert!(WebhookSecret::from_env(env("  ")).expect("blank").is_none());
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let read = WebhookSecret::from_env(env(secret))
            .expect("valid")
            .expect("set");
        assert_eq!(format!("{read:?}"), "WebhookSecret { .. }");
        // Bare base64 is taken too, as the crate takes it.
        assert!(WebhookSecret::from_env(env("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_ok());
        let error = WebhookSecret::from_env(env("whsec_not base64!")).expect_err("refused");
        assert!(matches!(error, SecretError::Encoding(SECRET_VAR)));
        assert!(!error.to_string().contains("not base64!"), "{error}");
        assert!(matches!(
            WebhookSecret::from_env(env("whsec_c2VjcmV0LXR3bw==")),
            Err(SecretError::Short(SECRET_VAR, 10))
        ));
    }

    #[test]
    fn a_previous_secret_is_accepted_on_receipt_and_checked() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs() as i64)
            .expect("a clock after 1970");
        let new = "whsec_bmV3LXNlY3JldC1hZnRlci10aGUtcm90YXRpb24=";
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let both = |name: &str| match name {
            SECRET_VAR => Some(new.to_owned()),
            PREVIOUS_VAR => Some(old.to_owned()),
            _ => None,
        };
        let read = WebhookSecret::from_env(both).expect("valid").expect("set");
        let mut headers = axum::http::HeaderMap::new();
        let signer = WebhookSigner::new(old).expect("a secret");
        for (name, value) in signer.headers("msg_old", now, "{}").expect("signed") {
            headers.insert(name, value.parse().expect("a header value"));
        }
        assert!(
            read.verifier.verify(&headers, b"{}").is_ok(),
            "the previous secret is accepted"
        );
        let alone = |name: &str| (name == PREVIOUS_VAR).then(|| old.to_owned());
        assert!(matches!(
            WebhookSecret::from_env(alone),
            Err(SecretError::PreviousAlone)
        ));
        let short = |name: &str| match name {
            SECRET_VAR => Some(new.to_owned()),
            PREVIOUS_VAR => Some("whsec_c2VjcmV0LXR3bw==".to_owned()),
            _ => None,
        };
        assert!(matches!(
            WebhookSecret::from_env(short),
            Err(SecretError::Short(PREVIOUS_VAR, 10))
        ));
    }
}

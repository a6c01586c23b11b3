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
//! Rotation is not offered: the library's verifier holds one secret, so a
//! change of secret means restarting both ends with the new one.

use std::fmt;

use asyncmcp::queue::webhook::{WebhookSigner, WebhookVerifier};
use base64::Engine;

/// The variable holding the secret.
pub(crate) const SECRET_VAR: &str = "ASYNCMCP_WEBHOOK_SECRET";

/// The shortest secret taken, in bytes: the Standard Webhooks
/// specification asks for 24 to 64 random bytes.
const MIN_SECRET_BYTES: usize = 24;

/// The secret could not be used. Never shows its value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// Not `whsec_` followed by standard base64.
    #[error(
        "{SECRET_VAR} is not a Standard Webhooks secret: expected `whsec_` followed by base64 \
         (e.g. `whsec_$(openssl rand -base64 32)`)"
    )]
    Encoding,
    /// Fewer than [`MIN_SECRET_BYTES`] bytes.
    #[error("{SECRET_VAR} holds {0} bytes; at least {MIN_SECRET_BYTES} are needed")]
    Short(usize),
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
    /// The secret in [`SECRET_VAR`], if set (and not blank).
    pub(crate) fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SecretError> {
        let Some(text) = var(SECRET_VAR).filter(|text| !text.trim().is_empty()) else {
            return Ok(None);
        };
        Self::parse(text.trim()).map(Some)
    }

    /// Reads `text` as the `standardwebhooks` crate does (`whsec_` optional,
    /// standard base64), and checks its length.
    fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Encoding)?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::Short(bytes.len()));
        }
        let signer = WebhookSigner::new(text).map_err(|_| SecretError::Encoding)?;
        let verifier = WebhookVerifier::new(text).map_err(|_| SecretError::Encoding)?;
        Ok(Self { signer, verifier })
    }
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
        assert!(matches!(error, SecretError::Encoding));
        assert!(!error.to_string().contains("not base64!"), "{error}");
        assert!(matches!(
            WebhookSecret::from_env(env("whsec_c2VjcmV0LXR3bw==")),
            Err(SecretError::Short(10))
        ));
    }
}

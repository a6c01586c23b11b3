//! Reaching a queue-backed MCP server: the options every subcommand that
//! talks to one shares, and the [`QueueClientTransport`] built from them.
//!
//! The server is named by `--queue-url` (its SQS request queue) or
//! `--topic-arn` (the SNS topic its request queue is subscribed to), exactly
//! one. Replies come back on a reply queue created on connect and deleted on
//! close (over SNS, with a reply topic of its own: `SnsReplies::OwnTopic`),
//! or on an existing queue given with `--reply-queue-url`, which is left as
//! it is. AWS settings come from the usual chain (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_PROFILE`, roles).
//!
//! Signing keys come from the environment only, never from a flag, where
//! `ps` would show them to every user of the machine: `ASYNCMCP_SIGNING_KEY`
//! (signs requests, checks replies) and `ASYNCMCP_SIGNING_KEY_PREVIOUS`
//! (still accepted on replies, for rotation), each at least 32 bytes, written
//! in hex (only hex digits, an even number of them) or else base64 (standard
//! or URL-safe alphabet, padded or not). With a key, replies without a valid
//! signature are dropped with a warning.

use std::sync::Arc;
use std::time::Duration;

use asyncmcp::QueueClientTransport;
use asyncmcp::client::{ClientError, QueueClientBuilder, SnsReplies};
use asyncmcp::queue::sns::{self, SnsOutbox};
use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp::queue::{RoutingOutbox, is_topic_arn};
use asyncmcp::wire::Detail;
use asyncmcp::wire::signing::{SigningError, SigningKeys};
use base64::Engine;

use crate::exit::Failure;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The variable naming the server's request queue, when no flag names the
/// server.
pub(crate) const QUEUE_URL_VAR: &str = "ASYNCMCP_QUEUE_URL";
/// The variable naming the server's request topic, when no flag names the
/// server.
pub(crate) const TOPIC_ARN_VAR: &str = "ASYNCMCP_TOPIC_ARN";
/// The variable holding the current signing key.
pub(crate) const SIGNING_KEY_VAR: &str = "ASYNCMCP_SIGNING_KEY";
/// The variable holding the previous signing key, still accepted on replies.
pub(crate) const PREVIOUS_SIGNING_KEY_VAR: &str = "ASYNCMCP_SIGNING_KEY_PREVIOUS";

/// The help on the settings of [`ConnectArgs`] that are not flags, for the
/// `after_help` of each subcommand that uses them (a macro, so that it can
/// be `concat!`ed to the subcommand's example).
macro_rules! environment_help {
    () => {
        "Environment:\n  \
         ASYNCMCP_QUEUE_URL, ASYNCMCP_TOPIC_ARN  the server, when neither flag names it (one \
         of the two)\n  \
         ASYNCMCP_SIGNING_KEY           key signing requests and checking replies (hex or base64, \
         at least 32 bytes); never a flag, so that `ps` does not show it\n  \
         ASYNCMCP_SIGNING_KEY_PREVIOUS  the key before it, still accepted on replies (rotation)\n  \
         ASYNCMCP_LOG                   log filter on stderr (default `warn`)\n  \
         AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ...  AWS settings, from the usual chain"
    };
}
pub(crate) use environment_help;

/// How the long polls of a reply queue given with `--reply-queue-url` last.
/// Closing waits for a poll in progress on such a queue (it may be shared,
/// so what the poll takes must be given back, not abandoned): shorter than
/// the 20 s default so that the command exits promptly.
const SHARED_REPLY_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// How to reach a queue-backed MCP server.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    // Not clap `env` settings: with both variables read by clap, a flag
    // could not override the other one's variable (`--topic-arn` with
    // ASYNCMCP_QUEUE_URL exported would conflict). Read in `target`.
    /// The server's request queue (an SQS queue URL) [env: ASYNCMCP_QUEUE_URL]
    #[arg(long, value_name = "URL", conflicts_with = "topic_arn", value_parser = parse_queue_url)]
    pub(crate) queue_url: Option<String>,

    /// The SNS topic the server's request queue is subscribed to [env:
    /// ASYNCMCP_TOPIC_ARN]
    #[arg(long, value_name = "ARN", value_parser = parse_topic_arn)]
    pub(crate) topic_arn: Option<String>,

    /// Receive replies on this existing queue (perhaps shared with other
    /// clients), which is left as it is, instead of on one created now and
    /// deleted on exit. With --topic-arn, the server sends replies straight
    /// to it.
    #[arg(
        long,
        env = "ASYNCMCP_REPLY_QUEUE_URL",
        value_name = "URL",
        value_parser = parse_queue_url
    )]
    pub(crate) reply_queue_url: Option<String>,

    /// The name this client is known by (its `ClientId`, with a random
    /// suffix per run) [default: a random UUID].
    #[arg(long, env = "ASYNCMCP_CLIENT_ID", value_name = "ID", value_parser = parse_client_id)]
    pub(crate) client_id: Option<String>,

    /// How long the whole command may take, connecting included (e.g. `30s`,
    /// `5m`, `1h 30m`); then a call in progress is cancelled.
    #[arg(
        long,
        env = "ASYNCMCP_TIMEOUT",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = humantime::parse_duration
    )]
    pub(crate) timeout: Duration,

    /// Send bodies over the queue's limit through this S3 bucket (under
    /// PREFIX), and read those the server sends so; see docs/offload.md.
    /// The server needs it too.
    #[arg(
        long,
        env = "ASYNCMCP_OFFLOAD_BUCKET",
        value_name = "BUCKET[/PREFIX]",
        value_parser = crate::offload::parse_offload_bucket
    )]
    pub(crate) offload_bucket: Option<crate::offload::OffloadBucket>,

    /// Send every attribute docs/wire.md defines on each request
    /// (`MessageType`, `Timestamp`, `Method`, `RequestId` too), for an SNS
    /// filter policy or other tooling that reads them. Default: only what a
    /// server reads.
    #[arg(long, env = "ASYNCMCP_FULL_ATTRIBUTES")]
    pub(crate) full_attributes: bool,
}

/// A setting that cannot be used; found before anything is sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    /// A key variable holds neither hex nor base64. (Never its value.)
    #[error("{var} is neither hex nor base64")]
    KeyEncoding {
        /// The variable.
        var: &'static str,
    },
    /// A key is too short.
    #[error("{var}: {source}")]
    WeakKey {
        /// The variable.
        var: &'static str,
        /// Why the key was refused.
        source: SigningError,
    },
    /// Only the previous key is set.
    #[error("{PREVIOUS_SIGNING_KEY_VAR} is set but {SIGNING_KEY_VAR} is not")]
    PreviousWithoutCurrent,
    /// Nothing names the server.
    #[error(
        "name the server with --queue-url or --topic-arn (or {QUEUE_URL_VAR} or {TOPIC_ARN_VAR})"
    )]
    NoServer,
    /// Both variables name a server, and no flag chooses.
    #[error(
        "both {QUEUE_URL_VAR} and {TOPIC_ARN_VAR} are set: choose with --queue-url or --topic-arn"
    )]
    TwoServers,
    /// A variable holds something unusable.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<SettingsError> for Failure {
    fn from(error: SettingsError) -> Self {
        Failure::Usage(error.to_string())
    }
}

/// The server and settings, checked, ready to [`connect`](Self::connect).
#[derive(Debug)]
pub(crate) struct Target {
    builder: QueueClientBuilder,
    over_sns: bool,
    reply_queue: Option<String>,
    timeout: Duration,
    offload: Option<crate::offload::OffloadBucket>,
}

impl ConnectArgs {
    /// Checks the settings, reading the signing keys from the environment.
    /// Nothing is sent or created.
    pub(crate) fn target(&self) -> Result<Target, SettingsError> {
        self.target_with(|name| std::env::var(name).ok())
    }

    /// [`target`](Self::target), with the environment read through `var`.
    fn target_with(&self, var: impl Fn(&str) -> Option<String>) -> Result<Target, SettingsError> {
        let (server, over_sns) = match (&self.queue_url, &self.topic_arn) {
            (Some(url), _) => (url.clone(), false),
            (None, Some(arn)) => (arn.clone(), true),
            (None, None) => server_from(&var)?,
        };
        let mut builder = QueueClientTransport::builder(server);
        if let Some(id) = &self.client_id {
            builder = builder.client_id(id.as_str());
        }
        if let Some(keys) = signing_keys(var)? {
            // Required: a reply without a valid signature is dropped, or
            // anyone able to write to the reply queue could answer for the
            // server.
            builder = builder.signing(keys, true);
        }
        if self.reply_queue_url.is_some() {
            builder = builder.wait(SHARED_REPLY_QUEUE_WAIT);
        }
        if self.full_attributes {
            builder = builder.attribute_detail(Detail::Full);
        }
        Ok(Target {
            builder,
            over_sns,
            reply_queue: self.reply_queue_url.clone(),
            timeout: self.timeout,
            offload: self.offload_bucket.clone(),
        })
    }
}

/// The server named by [`QUEUE_URL_VAR`] or [`TOPIC_ARN_VAR`] (exactly one),
/// and whether it is a topic.
fn server_from(var: impl Fn(&str) -> Option<String>) -> Result<(String, bool), SettingsError> {
    let set = |name| var(name).filter(|value| !value.trim().is_empty());
    let invalid = |var| move |reason| SettingsError::Invalid { var, reason };
    match (set(QUEUE_URL_VAR), set(TOPIC_ARN_VAR)) {
        (Some(_), Some(_)) => Err(SettingsError::TwoServers),
        (Some(url), None) => Ok((
            parse_queue_url(&url).map_err(invalid(QUEUE_URL_VAR))?,
            false,
        )),
        (None, Some(arn)) => Ok((parse_topic_arn(&arn).map_err(invalid(TOPIC_ARN_VAR))?, true)),
        (None, None) => Err(SettingsError::NoServer),
    }
}

impl Target {
    /// How long the whole command may take (`--timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects, with the AWS settings of the environment: opens the reply
    /// queue given, or creates one (over SNS, with its own reply topic).
    pub(crate) async fn connect(self) -> Result<QueueClientTransport, ClientError> {
        let sdk = sqs::sdk_config_from_env().await;
        let sqs_client = sqs::client(&sdk);
        let builder = match &self.offload {
            Some(offload) => self.builder.offload(offload.settings().await),
            None => self.builder,
        };
        match (self.over_sns, self.reply_queue) {
            (false, None) => builder.connect_sqs(&sqs_client).await,
            (false, Some(url)) => builder.reply_queue(url).connect_sqs(&sqs_client).await,
            (true, None) => {
                builder
                    .connect_sns_sqs(&sqs_client, &sns::client(&sdk), SnsReplies::OwnTopic)
                    .await
            }
            (true, Some(url)) => {
                let inbox = SqsInbox::open(sqs_client.clone(), &url).await?;
                let outbox = RoutingOutbox::new()
                    .with(Arc::new(SnsOutbox::new(sns::client(&sdk))))
                    .with(Arc::new(SqsOutbox::new(sqs_client)));
                Ok(builder.build(inbox, outbox))
            }
        }
    }
}

/// The signing keys in the environment, if any.
pub(crate) fn signing_keys(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<SigningKeys>, SettingsError> {
    let read = |name: &'static str| -> Result<Option<Vec<u8>>, SettingsError> {
        match var(name).filter(|text| !text.trim().is_empty()) {
            None => Ok(None),
            Some(text) => decode_key(&text)
                .map(Some)
                .ok_or(SettingsError::KeyEncoding { var: name }),
        }
    };
    let current = read(SIGNING_KEY_VAR)?;
    let previous = read(PREVIOUS_SIGNING_KEY_VAR)?;
    let Some(current) = current else {
        return match previous {
            Some(_) => Err(SettingsError::PreviousWithoutCurrent),
            None => Ok(None),
        };
    };
    // Checked one at a time, to name the variable that holds a short key.
    for (name, key) in [
        (SIGNING_KEY_VAR, Some(&current)),
        (PREVIOUS_SIGNING_KEY_VAR, previous.as_ref()),
    ] {
        if let Some(key) = key
            && let Err(source) = SigningKeys::new(key.clone(), None)
        {
            return Err(SettingsError::WeakKey { var: name, source });
        }
    }
    SigningKeys::new(current, previous)
        .map(Some)
        .map_err(|source| SettingsError::WeakKey {
            var: SIGNING_KEY_VAR,
            source,
        })
}

/// A key written in hex (only hex digits, an even number of them) or else in
/// base64 (standard or URL-safe alphabet, padded or not).
pub(crate) fn decode_key(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(text).ok();
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [
        GeneralPurpose::new(&base64::alphabet::STANDARD, config),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, config),
    ]
    .iter()
    .find_map(|engine| engine.decode(text).ok())
}

/// `--queue-url`, `--reply-queue-url`: an http(s) URL.
pub(crate) fn parse_queue_url(text: &str) -> Result<String, String> {
    if text.starts_with("https://") || text.starts_with("http://") {
        Ok(text.to_owned())
    } else {
        Err("not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)".into())
    }
}

/// `--topic-arn`: an SNS topic ARN.
pub(crate) fn parse_topic_arn(text: &str) -> Result<String, String> {
    if is_topic_arn(text) {
        Ok(text.to_owned())
    } else {
        Err("not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)".into())
    }
}

/// `--client-id`: 1 to 100 printable ASCII characters, no spaces, as the
/// wire's ids are.
pub(crate) fn parse_client_id(text: &str) -> Result<String, String> {
    if (1..=100).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_owned())
    } else {
        Err("1 to 100 printable ASCII characters, without spaces".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_read_as_hex_or_base64() {
        let from_hex = decode_key(HEX_KEY).expect("hex");
        assert_eq!(from_hex, (0u8..32).collect::<Vec<_>>());
        let standard = base64::engine::general_purpose::STANDARD.encode(&from_hex);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb_u8; 33]);
        assert_eq!(decode_key(&standard), Some(from_hex));
        assert_eq!(decode_key(&url_safe), Some(vec![0xfb; 33]));
        assert_eq!(decode_key("not a key!"), None);
    }

    #[test]
    fn a_bad_key_is_refused_naming_the_variable_not_the_value() {
        let error = signing_keys(env(&[(SIGNING_KEY_VAR, "s3cr3t!!")])).expect_err("not a key");
        assert_eq!(
            error.to_string(),
            "ASYNCMCP_SIGNING_KEY is neither hex nor base64"
        );
        let short = signing_keys(env(&[(SIGNING_KEY_VAR, "00ff")])).expect_err("too short");
        assert!(
            short.to_string().starts_with("ASYNCMCP_SIGNING_KEY: "),
            "{short}"
        );
        let previous_short = signing_keys(env(&[
            (SIGNING_KEY_VAR, HEX_KEY),
            (PREVIOUS_SIGNING_KEY_VAR, "00ff"),
        ]))
        .expect_err("previous too short");
        assert!(
            previous_short
                .to_string()
                .starts_with("ASYNCMCP_SIGNING_KEY_PREVIOUS: "),
            "{previous_short}"
        );
        assert!(matches!(
            signing_keys(env(&[(PREVIOUS_SIGNING_KEY_VAR, HEX_KEY)])),
            Err(SettingsError::PreviousWithoutCurrent)
        ));
    }

    #[test]
    fn no_key_or_an_empty_one_means_unsigned() {
        assert!(signing_keys(env(&[])).expect("fine").is_none());
        assert!(
            signing_keys(env(&[(SIGNING_KEY_VAR, " ")]))
                .expect("fine")
                .is_none()
        );
        assert!(
            signing_keys(env(&[(SIGNING_KEY_VAR, HEX_KEY)]))
                .expect("fine")
                .is_some()
        );
    }

    const URL: &str = "http://localhost:4566/000000000000/requests";
    const ARN: &str = "arn:aws:sns:us-east-1:000000000000:requests";

    /// Whether `args` and the variables `vars` name a topic (`Ok(true)`) or
    /// a queue (`Ok(false)`).
    fn over_sns(args: &[&str], vars: &[(&str, &str)]) -> Result<bool, String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let target = cli
            .connect
            .target_with(env(vars))
            .map_err(|e| e.to_string())?;
        Ok(target.over_sns)
    }

    #[test]
    fn exactly_one_of_queue_url_and_topic_arn() {
        assert_eq!(over_sns(&["--queue-url", URL], &[]), Ok(false));
        assert_eq!(over_sns(&["--topic-arn", ARN], &[]), Ok(true));
        assert!(
            over_sns(&["--queue-url", URL, "--topic-arn", ARN], &[]).is_err(),
            "both"
        );
        let neither = over_sns(&[], &[]).expect_err("neither");
        assert!(neither.contains("--queue-url or --topic-arn"), "{neither}");
        assert!(
            over_sns(&["--topic-arn", URL], &[]).is_err(),
            "a URL is no ARN"
        );
        assert!(
            over_sns(&["--queue-url", ARN], &[]).is_err(),
            "an ARN is no URL"
        );
    }

    #[test]
    fn the_variables_name_the_server_when_no_flag_does() {
        assert_eq!(over_sns(&[], &[(QUEUE_URL_VAR, URL)]), Ok(false));
        assert_eq!(over_sns(&[], &[(TOPIC_ARN_VAR, ARN)]), Ok(true));
        let both = [(QUEUE_URL_VAR, URL), (TOPIC_ARN_VAR, ARN)];
        assert!(
            over_sns(&[], &both).is_err(),
            "two servers, no flag to choose"
        );
        assert_eq!(
            over_sns(&["--topic-arn", ARN], &both),
            Ok(true),
            "a flag wins"
        );
        assert_eq!(
            over_sns(&["--topic-arn", ARN], &[(QUEUE_URL_VAR, URL)]),
            Ok(true)
        );
        let bad = over_sns(&[], &[(TOPIC_ARN_VAR, URL)]).expect_err("not an ARN");
        assert!(bad.starts_with("ASYNCMCP_TOPIC_ARN: "), "{bad}");
    }

    #[test]
    fn the_client_id_and_timeout_are_checked() {
        assert!(Cli::try_parse_from(["x", "--queue-url", URL, "--client-id", "a b"]).is_err());
        let cli = Cli::try_parse_from(["x", "--queue-url", URL, "--timeout", "90s"]).expect("ok");
        assert_eq!(cli.connect.timeout, Duration::from_secs(90));
        assert!(Cli::try_parse_from(["x", "--queue-url", URL, "--timeout", "soon"]).is_err());
    }
}

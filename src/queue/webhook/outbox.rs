//! [`WebhookOutbox`]: an [`Outbox`] that POSTs each message to a webhook URL.
//!
//! One send is one delivery of one message: the body (JSON-RPC) POSTed as
//! `application/json` with the headers Python asyncmcp's webhook transport
//! sends (`X-Session-ID`, `X-Request-ID`, `X-Method`, `X-Client-ID`, from the
//! message's `SessionId`, `RequestId`, `Method`, `ClientId` attributes; plus
//! `X-Sequence`, and `Mcp-Session-Id` from `McpSessionId` for the
//! StreamableHTTP+webhook hybrid), and, when a [`WebhookSigner`] is set, the
//! Standard Webhooks signature headers.
//!
//! **Retries.** A 5xx, 408 or 429 answer, a timeout or a connection failure
//! is tried again after a pause doubling from
//! [`backoff`](WebhookOutboxBuilder::backoff)'s first to its ceiling (a
//! `Retry-After`, in seconds or as an HTTP date, is honoured up to a cap), for at most
//! [`max_attempts`](WebhookOutboxBuilder::max_attempts) attempts within the
//! send's [`deadline`](WebhookOutboxBuilder::deadline). Other answers are
//! final: 2xx delivered; 3xx (redirects are never followed) and other 4xx a
//! permanent failure, as is a URL or address the [`WebhookPolicy`] refuses.
//!
//! **How a final failure ends.** Every final failure is permanent
//! ([`QueueError::is_permanent`]): a [`QueueError::EntryFailed`] with
//! `sender_fault`, its code `HTTP <status>`, `ForbiddenAddress` (the guard
//! refused it) or `WebhookUnreachable` (retries used up on 5xx / 408 / 429 /
//! timeouts / refused connections: the receiver is down), its message the
//! last failure and the attempt count. The outbox's own retries are the
//! retry budget: a queue server given a permanent reply failure does not
//! leave the request to be redelivered and replayed into the same dead
//! receiver; with dead-lettering configured
//! ([`QueueServerBuilder::dead_letter`](crate::server::QueueServerBuilder::dead_letter))
//! it moves the request to the dead-letter queue at once, with this error
//! as the reason (and tries to tell the caller, at the same webhook), and
//! removes it. A receiver down for good thus ends with the request
//! dead-lettered, nothing lost; `asyncmcp dlq` can send it again later.
//! Without dead-lettering the request is removed with a warning.
//!
//! **Concurrency.** At most [`per_destination`](WebhookOutboxBuilder::per_destination)
//! deliveries to one origin (scheme, host, port) are in flight at once, so
//! one slow receiver cannot take every connection; waiting for a slot counts
//! against the deadline. The table of origins is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::guard::{GuardError, GuardedResolver, Lookup, SystemLookup, WebhookPolicy};
use super::signing::{WebhookSigner, unix_now};
use crate::queue::address::is_queue_url;
use crate::queue::{DEFAULT_MAX_MESSAGE_SIZE, Outbox, QueueError, QueueMessage};
use crate::wire::attr;

/// How many origins' concurrency limits are kept.
const MAX_ORIGINS: usize = 1024;

/// Message attributes sent as the headers Python asyncmcp uses.
const HEADERS: [(&str, &str); 6] = [
    ("SessionId", "X-Session-ID"),
    (attr::MCP_SESSION_ID, "Mcp-Session-Id"),
    ("RequestId", "X-Request-ID"),
    ("Method", "X-Method"),
    ("ClientId", "X-Client-ID"),
    ("Sequence", "X-Sequence"),
];

/// Builds a [`WebhookOutbox`].
#[derive(Debug)]
pub struct WebhookOutboxBuilder {
    policy: WebhookPolicy,
    lookup: Arc<dyn Lookup>,
    signer: Option<WebhookSigner>,
    settings: Settings,
}

#[derive(Debug, Clone)]
struct Settings {
    max_attempts: u32,
    first_backoff: Duration,
    max_backoff: Duration,
    retry_after_cap: Duration,
    attempt_timeout: Duration,
    deadline: Duration,
    per_destination: usize,
    max_message_size: usize,
}

impl WebhookOutboxBuilder {
    /// Sends at most `attempts` times per message (at least 1; default 4).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self
    }

    /// Pauses `first` after the first failure, doubling up to `max`
    /// (default 250 ms to 4 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.settings.first_backoff = first;
        self.settings.max_backoff = max.max(first);
        self
    }

    /// Honours a receiver's `Retry-After` up to `cap` (default 10 s).
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.settings.retry_after_cap = cap;
        self
    }

    /// Gives up on one attempt after `timeout` (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = timeout;
        self
    }

    /// Gives up on a send, retries and waits for a slot included, after
    /// `deadline` (default 30 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = deadline;
        self
    }

    /// At most `limit` deliveries in flight per origin (default 16).
    pub fn per_destination(mut self, limit: usize) -> Self {
        self.settings.per_destination = limit.max(1);
        self
    }

    /// Refuses bodies larger than `bytes` (default 1 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// Signs every delivery (Standard Webhooks).
    pub fn signer(mut self, signer: WebhookSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Resolves host names with `lookup` instead of the system resolver
    /// (the policy applies to its answers all the same).
    pub fn lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// The outbox; fails only when the HTTP client cannot be made (no TLS
    /// backend).
    pub fn build(self) -> Result<WebhookOutbox, QueueError> {
        let policy = Arc::new(self.policy);
        let client = Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone(), self.lookup)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.settings.attempt_timeout)
            .connect_timeout(self.settings.attempt_timeout)
            .user_agent(concat!("asyncmcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| QueueError::from_source("cannot build the webhook client", error))?;
        Ok(WebhookOutbox {
            inner: Arc::new(Inner {
                client,
                policy,
                signer: self.signer,
                settings: self.settings,
                origins: Mutex::default(),
            }),
        })
    }
}

/// Sends messages by POSTing them to webhook URLs; see the
/// [module docs](self). Cheap to clone: clones share the client and limits.
#[derive(Debug, Clone)]
pub struct WebhookOutbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    policy: Arc<WebhookPolicy>,
    signer: Option<WebhookSigner>,
    settings: Settings,
    origins: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// How one attempt ended, when it did not deliver.
enum Failure {
    /// Not worth trying again.
    Permanent(QueueError),
    /// Worth trying again, after at least `after` when the receiver said.
    Passing {
        reason: String,
        after: Option<Duration>,
    },
}

impl WebhookOutbox {
    /// A builder sending where `policy` allows.
    pub fn builder(policy: WebhookPolicy) -> WebhookOutboxBuilder {
        WebhookOutboxBuilder {
            policy,
            lookup: Arc::new(SystemLookup),
            signer: None,
            settings: Settings {
                max_attempts: 4,
                first_backoff: Duration::from_millis(250),
                max_backoff: Duration::from_secs(4),
                retry_after_cap: Duration::from_secs(10),
                attempt_timeout: Duration::from_secs(10),
                deadline: Duration::from_secs(30),
                per_destination: 16,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            },
        }
    }

    /// The policy this outbox sends by.
    pub fn policy(&self) -> &WebhookPolicy {
        &self.inner.policy
    }

    /// The concurrency limit of `url`'s origin.
    fn slots(&self, url: &Url) -> Arc<Semaphore> {
        let origin = url.origin().ascii_serialization();
        let mut origins = self
            .inner
            .origins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = origins.get(&origin) {
            return slots.clone();
        }
        if origins.len() >= MAX_ORIGINS {
            // Forget idle origins; busy ones keep their limit.
            origins.retain(|_, slots| Arc::strong_count(slots) > 1);
        }
        let slots = Arc::new(Semaphore::new(self.inner.settings.per_destination));
        if origins.len() < MAX_ORIGINS {
            origins.insert(origin, slots.clone());
        }
        slots
    }

    /// One POST of `message` to `url`.
    async fn attempt(&self, url: &Url, message: &QueueMessage, id: &str) -> Result<(), Failure> {
        let mut request = self
            .inner
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(message.body.clone());
        for (attribute, header) in HEADERS {
            if let Some(value) = message.attribute(attribute) {
                request = request.header(header, value);
            }
        }
        if let Some(signer) = &self.inner.signer {
            let headers = signer
                .headers(id, unix_now(), &message.body)
                .map_err(|error| {
                    Failure::Permanent(QueueError::from_source("cannot sign", error))
                })?;
            for (name, value) in headers {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|error| failure_of(&error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(&response);
        Err(match status {
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Failure::Passing {
                reason: format!("the receiver answered {status}"),
                after,
            },
            status if status.is_server_error() => Failure::Passing {
                reason: format!("the receiver answered {status}"),
                after,
            },
            status => Failure::Permanent(refused(
                &format!("HTTP {}", status.as_u16()),
                if status.is_redirection() {
                    format!("the receiver answered {status}; webhook redirects are not followed")
                } else {
                    format!("the receiver answered {status}")
                },
            )),
        })
    }
}

/// A permanent failure: the receiver (or the guard) refused the delivery.
fn refused(code: &str, message: String) -> QueueError {
    QueueError::EntryFailed {
        code: code.to_owned(),
        message,
        sender_fault: true,
    }
}

/// What a failed HTTP call means: a guard refusal (found in the error's
/// sources) is permanent; a timeout or connection failure is passing.
fn failure_of(error: &reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(guard) = current.downcast_ref::<GuardError>() {
            return Failure::Permanent(refused("ForbiddenAddress", guard.to_string()));
        }
        source = current.source();
    }
    if error.is_builder() || error.is_request() && !error.is_connect() && !error.is_timeout() {
        return Failure::Permanent(refused("BadRequest", chain(error)));
    }
    Failure::Passing {
        reason: chain(error),
        after: None,
    }
}

/// An error and its sources, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        text.push_str(": ");
        text.push_str(&current.to_string());
        source = current.source();
    }
    text
}

/// A receiver's `Retry-After`: seconds, or an HTTP date (how long until
/// then; zero for a date past). Anything else is ignored.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let text = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(text, SystemTime::now())
}

/// [`retry_after`] on the header's text, at `now`.
fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delivery id of `message`: its [`DELIVERY_ID`](attr::DELIVERY_ID)
/// when the sender chose one; else the same for every attempt and every
/// replay of one reply (a hash of its request id, sequence, session and
/// body), random for a message without a request id.
pub(crate) fn delivery_id(message: &QueueMessage) -> String {
    if let Some(id) = message.attribute(attr::DELIVERY_ID) {
        return id.to_owned();
    }
    let Some(request_id) = message.attribute("RequestId") else {
        return format!("msg_{}", uuid::Uuid::new_v4().simple());
    };
    let mut hash = Sha256::new();
    for part in [
        message.attribute("SessionId").unwrap_or(""),
        message.attribute("ClientId").unwrap_or(""),
        request_id,
        message.attribute("Sequence").unwrap_or(""),
        &message.body,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

#[async_trait]
impl Outbox for WebhookOutbox {
    /// `http(s)://` URLs of the policy's scheme and prefixes (the address
    /// check comes at send time), except SQS queue URLs: in a
    /// [`RoutingOutbox`](crate::queue::RoutingOutbox) those go to the SQS
    /// outbox, in whatever order the routes were added.
    fn accepts(&self, address: &str) -> bool {
        !is_queue_url(address) && self.inner.policy.allows(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        let url = match self.inner.policy.check_url(address) {
            Ok(url) => url,
            Err(
                error @ (GuardError::NotAllowed(_)
                | GuardError::Scheme(_)
                | GuardError::Malformed(_)),
            ) => {
                tracing::warn!(%error, "webhook URL refused");
                return Err(QueueError::UnsupportedDestination(
                    address.chars().take(200).collect(),
                ));
            }
            Err(error) => return Err(refused("ForbiddenAddress", error.to_string())),
        };
        let settings = &self.inner.settings;
        if message.body.len() > settings.max_message_size {
            return Err(QueueError::TooLarge {
                size: message.body.len(),
                limit: settings.max_message_size,
            });
        }
        let deadline = Instant::now() + settings.deadline;
        let id = delivery_id(&message);
        let slots = self.slots(&url);
        let mut pause = settings.first_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = async {
                let _slot = slots.acquire().await.map_err(|_| Failure::Passing {
                    reason: "closed".to_owned(),
                    after: None,
                })?;
                self.attempt(&url, &message, &id).await
            };
            let (reason, after) = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(())) => {
                    tracing::debug!(webhook = %url, attempts, "webhook delivered");
                    return Ok(());
                }
                Ok(Err(Failure::Permanent(error))) => {
                    tracing::warn!(webhook = %url, %error, "webhook delivery refused");
                    return Err(error);
                }
                Ok(Err(Failure::Passing { reason, after })) => (reason, after),
                Err(_) => ("the send deadline passed".to_owned(), None),
            };
            let wait = after.map_or(pause, |after| after.min(settings.retry_after_cap));
            pause = (pause * 2).min(settings.max_backoff);
            if attempts >= settings.max_attempts || Instant::now() + wait >= deadline {
                tracing::warn!(webhook = %url, attempts, %reason, "webhook delivery failed");
                return Err(refused(
                    "WebhookUnreachable",
                    format!("webhook {url} not delivered after {attempts} attempt(s): {reason}"),
                ));
            }
            tracing::info!(webhook = %url, attempts, %reason, retry_in = ?wait, "webhook delivery failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn max_message_size(&self, _address: &str) -> Result<usize, QueueError> {
        Ok(self.inner.settings.max_message_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        // Wed, 21 Oct 2015 07:28:00 GMT is `now`.
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now),
            Some(Duration::ZERO),
            "a date past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn delivery_ids_are_stable_per_reply_and_distinct_between_replies() {
        let reply = |sequence: &str, body: &str| {
            QueueMessage::new(body)
                .with_string("RequestId", "7")
                .with_string("SessionId", "s")
                .with_string("Sequence", sequence)
        };
        assert_eq!(
            delivery_id(&reply("1", "{}")),
            delivery_id(&reply("1", "{}"))
        );
        assert_ne!(
            delivery_id(&reply("1", "{}")),
            delivery_id(&reply("2", "{}"))
        );
        assert_ne!(
            delivery_id(&reply("1", "{}")),
            delivery_id(&reply("1", "{ }"))
        );
        let loose = QueueMessage::new("{}");
        assert_ne!(delivery_id(&loose), delivery_id(&loose));
        assert!(delivery_id(&loose).starts_with("msg_"));
    }

    #[test]
    fn only_allowed_webhook_urls_are_accepted() {
        let outbox =
            WebhookOutbox::builder(WebhookPolicy::prefixes(["https://hooks.example.com/"]))
                .build()
                .expect("an outbox");
        assert!(outbox.accepts("https://hooks.example.com/reply"));
        for other in [
            "https://other.example.com/reply",
            "http://hooks.example.com/reply",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "arn:aws:sns:us-east-1:123456789012:t",
            "memory://q",
        ] {
            assert!(!outbox.accepts(other), "{other}");
        }
    }

    /// SQS queue URLs and webhook URLs are both `https://`: each goes to
    /// its own outbox in a routing outbox.
    #[cfg(feature = "sqs")]
    #[test]
    fn a_routing_outbox_tells_queues_from_webhooks() {
        use crate::queue::RoutingOutbox;
        use crate::queue::sqs::SqsOutbox;
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};

        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let sqs: Arc<dyn Outbox> = Arc::new(SqsOutbox::new(aws_sdk_sqs::Client::from_conf(config)));
        let webhook: Arc<dyn Outbox> = Arc::new(
            WebhookOutbox::builder(WebhookPolicy::prefixes(["https://"]))
                .build()
                .expect("an outbox"),
        );
        let queue = "https://sqs.us-east-1.amazonaws.com/123456789012/replies";
        let hook = "https://example.com/hooks/reply";
        for routing in [
            RoutingOutbox::new().with(sqs.clone()).with(webhook.clone()),
            RoutingOutbox::new().with(webhook.clone()).with(sqs.clone()),
        ] {
            assert!(routing.accepts(queue) && routing.accepts(hook));
        }
        // Each claims only its own kind, so the order of routes is moot.
        assert!(sqs.accepts(queue) && !sqs.accepts(hook));
        assert!(webhook.accepts(hook) && !webhook.accepts(queue));
    }
}

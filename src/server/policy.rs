//! Which reply addresses a server will send to.
//!
//! A reply address comes from the sender of a request (the `ReplyTo`
//! attribute, an `initialize` parameter, or a session id the sender presents).
//! Without a check, a server would be a relay that writes to any queue its
//! credentials can reach. So every reply address is checked against an
//! allow-list of prefixes before anything is sent.

use crate::queue::address::{QueueUrl, is_region};

/// Why a reply address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request named no reply address at all.
    #[error("the request names no reply address")]
    Missing,
    /// The address is not of a form any outbox handles safely.
    #[error("reply address {0:?} is malformed")]
    Malformed(String),
    /// The address is outside the allow-list.
    #[error(
        "reply address {0:?} is not allowed: allow it with \
         QueueServerBuilder::allow_reply_prefix (`--allow-reply-prefix` in the example servers)"
    )]
    NotAllowed(String),
}

/// An allow-list of reply address prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPolicy {
    prefixes: Vec<String>,
}

impl ReplyPolicy {
    /// Allows addresses starting with any of `prefixes`.
    pub fn prefixes<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
        }
    }

    /// Queues beside `request_queue`, i.e. in the same account and on the
    /// same endpoint (the queue URL up to and including its last `/`), and
    /// SNS topics of the same account and region, when the URL shows both.
    /// For `http://host/queue/us-east-1/000000000000/requests` that is
    /// `http://host/queue/us-east-1/000000000000/` and
    /// `arn:aws:sns:us-east-1:000000000000:`; for `memory://requests`,
    /// `memory://`. A URL without a region (LocalStack's
    /// `http://localhost:4566/000000000000/requests`) allows no topic: see
    /// [`same_account_as_in`](Self::same_account_as_in).
    pub fn same_account_as(request_queue: &str) -> Self {
        Self::same_account_as_in(request_queue, None)
    }

    /// The server's default: as [`same_account_as`](Self::same_account_as),
    /// with `region` (the region the request queue was opened in) for the
    /// topics when the queue URL shows none. A region the URL shows wins.
    pub fn same_account_as_in(request_queue: &str, region: Option<&str>) -> Self {
        let prefix = match request_queue.rfind('/') {
            Some(slash) => request_queue[..=slash].to_owned(),
            None => request_queue.to_owned(),
        };
        let mut prefixes = vec![prefix];
        prefixes.extend(topic_prefix_of(request_queue, region));
        Self::prefixes(prefixes)
    }

    /// Adds a prefix to the allow-list.
    pub fn allow(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// The allowed prefixes.
    pub fn allowed(&self) -> &[String] {
        &self.prefixes
    }

    /// Checks `address`.
    ///
    /// Besides the prefix match, an address must be printable ASCII without
    /// spaces and must not contain `..`, `?`, `#` or `@`, so that a prefix
    /// cannot be escaped by path traversal, query strings or user info.
    pub fn check(&self, address: Option<&str>) -> Result<String, Refusal> {
        let address = address.ok_or(Refusal::Missing)?;
        let malformed = address.is_empty()
            || address.len() > 2048
            || !address.bytes().all(|b| (0x21..=0x7e).contains(&b))
            || address.contains("..")
            || address.contains(['?', '#', '@', '\\']);
        if malformed {
            return Err(Refusal::Malformed(truncate(address)));
        }
        if self
            .prefixes
            .iter()
            .any(|prefix| address.starts_with(prefix.as_str()) && address.len() > prefix.len())
        {
            Ok(address.to_owned())
        } else {
            Err(Refusal::NotAllowed(truncate(address)))
        }
    }
}

/// The ARN prefix of SNS topics in the account and region of the SQS queue at
/// `queue_url`: the region as the URL shows it (AWS's
/// `https://sqs.<region>.amazonaws.com/<account>/<name>`, LocalStack's
/// `http://host/queue/<region>/<account>/<name>` or
/// `http://sqs.<region>.localhost.localstack.cloud:4566/<account>/<name>`),
/// else `fallback_region` (for `http://host/<account>/<name>`). `None` when
/// `queue_url` is no queue URL or neither gives a region.
fn topic_prefix_of(queue_url: &str, fallback_region: Option<&str>) -> Option<String> {
    let url = QueueUrl::parse(queue_url)?;
    let region = url
        .region
        .or(fallback_region.filter(|region| is_region(region)))?;
    let partition = if url.host.ends_with(".amazonaws.com.cn") || region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    Some(format!("arn:{partition}:sns:{region}:{}:", url.account))
}

/// Keeps logged attacker-controlled text short.
fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUESTS: &str = "http://localhost:4566/queue/us-east-1/000000000000/requests";

    #[test]
    fn default_allows_queues_of_the_same_account() {
        let policy = ReplyPolicy::same_account_as(REQUESTS);
        let ok = "http://localhost:4566/queue/us-east-1/000000000000/replies";
        assert_eq!(policy.check(Some(ok)), Ok(ok.to_owned()));
    }

    #[test]
    fn other_accounts_endpoints_and_tricks_are_refused() {
        let policy = ReplyPolicy::same_account_as(REQUESTS);
        for bad in [
            "http://localhost:4566/queue/us-east-1/111111111111/replies",
            "http://evil:4566/queue/us-east-1/000000000000/replies",
            "http://localhost:4566/queue/us-east-1/000000000000/",
        ] {
            assert!(
                matches!(policy.check(Some(bad)), Err(Refusal::NotAllowed(_))),
                "{bad}"
            );
        }
        for bad in [
            "http://localhost:4566/queue/us-east-1/000000000000/../111/x",
            "http://localhost:4566/queue/us-east-1/000000000000/x?a=b",
            "http://localhost:4566/queue/us-east-1/000000000000/x y",
            "",
        ] {
            assert!(
                matches!(policy.check(Some(bad)), Err(Refusal::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(policy.check(None), Err(Refusal::Missing));
    }

    #[test]
    fn default_allows_topics_of_the_same_account_and_region() {
        let policy = ReplyPolicy::same_account_as(REQUESTS);
        let ok = "arn:aws:sns:us-east-1:000000000000:replies";
        assert_eq!(policy.check(Some(ok)), Ok(ok.to_owned()));
        for bad in [
            "arn:aws:sns:us-east-1:111111111111:replies",
            "arn:aws:sns:eu-west-1:000000000000:replies",
            "arn:aws:sqs:us-east-1:000000000000:replies",
            "arn:aws:sns:us-east-1:000000000000:",
        ] {
            assert!(
                matches!(policy.check(Some(bad)), Err(Refusal::NotAllowed(_))),
                "{bad}"
            );
        }
        for (url, prefix) in [
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/requests",
                Some("arn:aws:sns:eu-west-1:123456789012:"),
            ),
            (
                "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q",
                Some("arn:aws:sns:us-east-1:000000000000:"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                Some("arn:aws-cn:sns:cn-north-1:123456789012:"),
            ),
            ("http://localhost:9324/000000000000/q", None),
            ("http://localhost:4566/queue/us-east-1/12345/q", None),
            ("memory://requests", None),
        ] {
            assert_eq!(topic_prefix_of(url, None).as_deref(), prefix, "{url}");
        }
    }

    #[test]
    fn region_less_queue_urls_take_the_configured_region() {
        let policy = ReplyPolicy::same_account_as_in(
            "http://localhost:4566/000000000000/requests",
            Some("us-east-1"),
        );
        for ok in [
            "http://localhost:4566/000000000000/replies",
            "arn:aws:sns:us-east-1:000000000000:replies",
        ] {
            assert_eq!(policy.check(Some(ok)), Ok(ok.to_owned()), "{ok}");
        }
        for bad in [
            "arn:aws:sns:eu-west-1:000000000000:replies",
            "arn:aws:sns:us-east-1:111111111111:replies",
            "http://localhost:4566/111111111111/replies",
        ] {
            assert!(
                matches!(policy.check(Some(bad)), Err(Refusal::NotAllowed(_))),
                "{bad}"
            );
        }
        let topic = |url, region| topic_prefix_of(url, region);
        let local = Some("arn:aws:sns:us-east-1:000000000000:");
        for url in [
            "http://localhost:4566/000000000000/q",
            "http://localhost:4566/queue/us-east-1/000000000000/q",
            "http://sqs.localhost.localstack.cloud:4566/000000000000/q",
        ] {
            assert_eq!(topic(url, Some("us-east-1")).as_deref(), local, "{url}");
        }
        // A region the URL shows wins over the configured one.
        assert_eq!(
            topic(
                "http://localhost:4566/queue/us-east-1/000000000000/q",
                Some("eu-west-1")
            )
            .as_deref(),
            local
        );
        assert_eq!(
            topic(
                "https://sqs.us-east-1.amazonaws.com/123456789012/q",
                Some("eu-west-1")
            )
            .as_deref(),
            Some("arn:aws:sns:us-east-1:123456789012:")
        );
        assert_eq!(
            topic("http://localhost:4566/000000000000/q", Some("cn-north-1")).as_deref(),
            Some("arn:aws-cn:sns:cn-north-1:000000000000:")
        );
        // Without a region from anywhere, or one of no region's form: no topics.
        assert_eq!(topic("http://localhost:4566/000000000000/q", None), None);
        assert_eq!(
            topic("http://localhost:4566/000000000000/q", Some("x:y")),
            None
        );
        assert_eq!(topic("memory://requests", Some("us-east-1")), None);
    }

    #[test]
    fn refusals_name_the_setting_that_allows_the_address() {
        let policy = ReplyPolicy::same_account_as(REQUESTS);
        let refusal = policy.check(Some("arn:aws:sns:eu-west-1:000000000000:replies"));
        let text = refusal.unwrap_err().to_string();
        assert!(
            text.contains("arn:aws:sns:eu-west-1:000000000000:replies"),
            "{text}"
        );
        assert!(
            text.contains("QueueServerBuilder::allow_reply_prefix"),
            "{text}"
        );
        assert!(text.contains("--allow-reply-prefix"), "{text}");
    }

    #[test]
    fn memory_queues_and_extra_prefixes() {
        let policy = ReplyPolicy::same_account_as("memory://requests").allow("memory-other://");
        assert!(policy.check(Some("memory://replies")).is_ok());
        assert!(policy.check(Some("memory-other://x")).is_ok());
        assert!(policy.check(Some("http://x/y")).is_err());
    }
}

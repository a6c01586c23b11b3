//! Telling destination addresses apart: SQS queue URLs, SNS topic ARNs.
//!
//! A [`RoutingOutbox`](super::RoutingOutbox) hands each address to the first
//! outbox that accepts it, so an outbox must claim only addresses of its own
//! kind: an SQS outbox that took every `https://` URL would swallow a
//! webhook's. [`QueueUrl`] is the one reading of an SQS queue URL, shared by
//! the SQS outbox (which addresses are queues) and the server's reply policy
//! (which account and region a queue is in).

/// Whether `address` is an SNS topic ARN
/// (`arn:<partition>:sns:<region>:<account>:<name>`), as opposed to a queue.
/// A subscription ARN (one more `:<id>` part) is not a topic ARN.
pub fn is_topic_arn(address: &str) -> bool {
    let parts: Vec<&str> = address.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && parts.iter().all(|p| !p.is_empty())
}

/// Whether `address` names a FIFO queue or topic (its name ends in `.fifo`),
/// which needs a message group (and a deduplication id, unless it
/// deduplicates by content) on every message.
pub fn is_fifo(address: &str) -> bool {
    address.ends_with(".fifo")
}

/// Whether `address` is an SQS queue URL:
/// `<scheme>://<host>[:<port>]/<12-digit account>/<queue name>`, or
/// LocalStack's `.../queue/<region>/<account>/<name>`, with no query,
/// fragment or user info. What an SQS outbox sends to, and what a command
/// taking a queue URL can check before making any call.
///
/// ```
/// use asyncmcp::queue::is_queue_url;
/// assert!(is_queue_url("https://sqs.us-east-1.amazonaws.com/123456789012/requests"));
/// assert!(is_queue_url("http://localhost:4566/queue/us-east-1/000000000000/requests"));
/// assert!(!is_queue_url("https://example.com/hooks/reply"));
/// ```
pub fn is_queue_url(address: &str) -> bool {
    QueueUrl::parse(address).is_some()
}

/// The longest SQS queue name, `.fifo` included.
const MAX_QUEUE_NAME: usize = 80;

/// An SQS queue URL, taken apart.
///
/// The forms SQS and its stand-ins use are all
/// `<scheme>://<host>[:<port>]/<account>/<name>`, or LocalStack's
/// `<scheme>://<host>[:<port>]/queue/<region>/<account>/<name>`, where the
/// account is 12 digits and the name is a valid queue name (1 to 80
/// letters, digits, `-` and `_`, the last 5 of which may be `.fifo`):
///
/// * AWS: `https://sqs.<region>.amazonaws.com/...`, the legacy
///   `https://<region>.queue.amazonaws.com/...`, FIPS
///   (`sqs-fips.<region>.amazonaws.com`), China (`.amazonaws.com.cn`),
///   dual-stack (`sqs.<region>.api.aws`), VPC endpoints
///   (`vpce-<id>.sqs.<region>.vpce.amazonaws.com`);
/// * LocalStack: `http://localhost:4566/<account>/<name>`,
///   `http://sqs.<region>.localhost.localstack.cloud:4566/...` and the path
///   form above.
///
/// The host itself is not checked against a list, so that custom endpoints
/// keep working; the path is what sets a queue apart from, say, a webhook.
/// Query strings, fragments and user info are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueUrl<'a> {
    /// The host, without the port.
    pub(crate) host: &'a str,
    /// The region the URL shows (in its host or its path), if any.
    pub(crate) region: Option<&'a str>,
    /// The 12-digit account id.
    pub(crate) account: &'a str,
    /// The queue name.
    pub(crate) name: &'a str,
}

impl<'a> QueueUrl<'a> {
    /// Reads `url` as an SQS queue URL; `None` when it is not one.
    pub(crate) fn parse(url: &'a str) -> Option<Self> {
        if url.contains(['?', '#', '@', '\\']) || !url.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))?;
        let (authority, path) = rest.split_once('/')?;
        let host = host_of(authority)?;
        let segments: Vec<&str> = path.split('/').collect();
        let (path_region, account, name) = match segments.as_slice() {
            ["queue", region, account, name] if is_region(region) => (Some(*region), account, name),
            [account, name] => (None, account, name),
            _ => return None,
        };
        if !is_account(account) || !is_queue_name(name) {
            return None;
        }
        Some(Self {
            host,
            region: path_region.or_else(|| region_of_host(host)),
            account,
            name,
        })
    }
}

/// The host of `authority` (`host[:port]`), when both parts are well formed.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:4566`.
        let (inside, after) = bracketed.split_once(']')?;
        let ok = !inside.is_empty()
            && inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|port| {
        (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
    });
    let host_ok = host.starts_with('[')
        || host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    (port_ok && host_ok).then_some(host)
}

/// The region a queue host names: the label after `sqs` or `sqs-fips`
/// (`sqs.<region>.amazonaws.com`, `vpce-<id>.sqs.<region>.vpce...`), or
/// before `queue` (the legacy `<region>.queue.amazonaws.com`).
fn region_of_host(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.split('.').collect();
    let after_service = labels
        .windows(2)
        .find(|pair| matches!(pair[0], "sqs" | "sqs-fips") && is_region(pair[1]))
        .map(|pair| pair[1]);
    let legacy = match labels.as_slice() {
        [region, "queue", ..] if is_region(region) => Some(*region),
        _ => None,
    };
    after_service.or(legacy)
}

/// Whether `text` is an AWS account id: 12 digits.
fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is a valid SQS queue name: 1 to 80 characters of letters,
/// digits, `-` and `_`, the last five of which may be `.fifo`.
fn is_queue_name(name: &str) -> bool {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    !stem.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `text` has the form of a region name (`us-east-1`): lowercase
/// letters, digits and dashes, with a dash, ending in a digit. Keeps a host
/// part such as `sqs.localhost.localstack.cloud`'s `localhost` from being
/// taken for one.
pub(crate) fn is_region(text: &str) -> bool {
    text.contains('-')
        && text.ends_with(|c: char| c.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "123456789012";

    #[test]
    fn queue_urls_are_read() {
        // (url, host, region)
        let cases = [
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/q",
                "sqs.us-east-1.amazonaws.com",
                Some("us-east-1"),
            ),
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo",
                "sqs.eu-west-1.amazonaws.com",
                Some("eu-west-1"),
            ),
            (
                "https://us-east-2.queue.amazonaws.com/123456789012/q",
                "us-east-2.queue.amazonaws.com",
                Some("us-east-2"),
            ),
            (
                "https://queue.amazonaws.com/123456789012/q",
                "queue.amazonaws.com",
                None,
            ),
            (
                "https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/q",
                "sqs-fips.us-gov-west-1.amazonaws.com",
                Some("us-gov-west-1"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                "sqs.cn-north-1.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            (
                "https://sqs.us-east-1.api.aws/123456789012/q",
                "sqs.us-east-1.api.aws",
                Some("us-east-1"),
            ),
            (
                "https://vpce-0a1b2c3d4e5f-abcdefgh.sqs.us-east-1.vpce.amazonaws.com/123456789012/q",
                "vpce-0a1b2c3d4e5f-abcdefgh.sqs.us-east-1.vpce.amazonaws.com",
                Some("us-east-1"),
            ),
            ("http://localhost:4566/123456789012/q", "localhost", None),
            ("http://127.0.0.1:4566/123456789012/q", "127.0.0.1", None),
            ("http://[::1]:4566/123456789012/q", "[::1]", None),
            (
                "http://sqs.us-east-1.localhost.localstack.cloud:4566/123456789012/q",
                "sqs.us-east-1.localhost.localstack.cloud",
                Some("us-east-1"),
            ),
            (
                "http://sqs.localhost.localstack.cloud:4566/123456789012/q",
                "sqs.localhost.localstack.cloud",
                None,
            ),
            (
                "http://localhost:4566/queue/eu-central-1/123456789012/q",
                "localhost",
                Some("eu-central-1"),
            ),
            (
                "http://sqs.us-east-1.localhost.localstack.cloud:4566/queue/eu-west-1/123456789012/q",
                "sqs.us-east-1.localhost.localstack.cloud",
                Some("eu-west-1"),
            ),
        ];
        for (url, host, region) in cases {
            assert!(is_queue_url(url), "{url}");
            let parsed = QueueUrl::parse(url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(parsed.host, host, "{url}");
            assert_eq!(parsed.region, region, "{url}");
            assert_eq!(parsed.account, ACCOUNT, "{url}");
            assert!(parsed.name == "q" || parsed.name == "orders.fifo", "{url}");
        }
    }

    #[test]
    fn queue_names_are_checked() {
        let url = |name: &str| format!("https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{name}");
        for name in [
            "a",
            "A-b_9",
            "x.fifo",
            &"n".repeat(80),
            &format!("{}.fifo", "n".repeat(75)),
        ] {
            assert_eq!(QueueUrl::parse(&url(name)).map(|u| u.name), Some(name));
        }
        for name in [
            "",
            ".fifo",
            "a.b",
            "q.fifo.fifo",
            "q!",
            "q%20",
            "q.FIFO",
            &"n".repeat(81),
            &format!("{}.fifo", "n".repeat(76)),
        ] {
            assert_eq!(QueueUrl::parse(&url(name)), None, "{name}");
        }
    }

    #[test]
    fn other_addresses_are_not_queue_urls() {
        for address in [
            "https://example.com/hooks/reply",
            "https://example.com/",
            "https://example.com",
            "https://",
            "http://localhost:4566/123456789012/",
            "http://localhost:4566/123456789012",
            "http://localhost:4566/12345/q",
            "http://localhost:4566/1234567890123/q",
            "http://localhost:4566/12345678901a/q",
            "http://localhost:4566/123456789012/q/",
            "http://localhost:4566/123456789012/q/extra",
            "http://localhost:4566//123456789012/q",
            "http://localhost:4566/hooks/123456789012/q",
            "http://localhost:4566/queue/123456789012/q",
            "http://localhost:4566/queue/not_a_region/123456789012/q",
            "http://localhost:4566/queue/us-east-1/12345/q",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q?Action=SendMessage",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q#x",
            "https://user@sqs.us-east-1.amazonaws.com/123456789012/q",
            "https://sqs.us-east-1.amazonaws.com:/123456789012/q",
            "https://sqs.us-east-1.amazonaws.com:443443/123456789012/q",
            "https://sqs..amazonaws.com/123456789012/q",
            "https://sqs us-east-1.amazonaws.com/123456789012/q",
            "https://[zz]/123456789012/q",
            "ftp://sqs.us-east-1.amazonaws.com/123456789012/q",
            "HTTPS://sqs.us-east-1.amazonaws.com/123456789012/q",
            "memory://q",
            "arn:aws:sns:us-east-1:123456789012:q",
            "",
        ] {
            assert_eq!(QueueUrl::parse(address), None, "{address}");
            assert!(!is_queue_url(address), "{address}");
        }
    }

    #[test]
    fn regions_are_recognised() {
        assert!(is_region("us-east-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("localhost"));
        assert!(!is_region("US-EAST-1"));
        assert!(!is_region("us-east"));
    }

    #[test]
    fn topic_arns_and_fifo_names_are_recognised() {
        assert!(is_topic_arn("arn:aws:sns:us-east-1:000000000000:replies"));
        assert!(!is_topic_arn("arn:aws:sns:us-east-1:000000000000:"));
        assert!(is_fifo(
            "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"
        ));
        assert!(!is_fifo(
            "https://sqs.us-east-1.amazonaws.com/123456789012/q"
        ));
    }
}

//! What can go wrong at the broker seam.
//!
//! [`QueueError`] is `Clone`, so that one failed batch call can fail each
//! entry it carried; an underlying error (an AWS SDK error, a codec error) is
//! therefore kept behind an `Arc`. `Display` and `Error` are written out
//! rather than derived: a derived `source()` would hand out the `Arc` itself,
//! which no caller can downcast to the error inside it.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Errors from a broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum QueueError {
    /// The destination address is not one this outbox can send to.
    UnsupportedDestination(String),
    /// The queue does not exist.
    NoSuchQueue(String),
    /// The topic does not exist.
    NoSuchTopic(String),
    /// The message is larger than the destination accepts.
    TooLarge {
        /// The message's size as the broker counts it.
        size: usize,
        /// The destination's limit.
        limit: usize,
    },
    /// The message has more attributes than the destination delivers: SNS
    /// silently drops a message with more than 10 attributes on its way to a
    /// queue with raw message delivery, so such a message is refused instead.
    TooManyAttributes {
        /// The message's attribute count.
        count: usize,
        /// The destination's limit.
        limit: usize,
    },
    /// The receipt no longer settles anything (already settled, or expired).
    InvalidReceipt,
    /// The broker refused one entry of a batch call.
    EntryFailed {
        /// The broker's error code.
        code: String,
        /// The broker's message.
        message: String,
        /// Whether the broker blamed the sender (not worth retrying).
        sender_fault: bool,
    },
    /// The broker could not be reached or answered with an error, or the
    /// call could not be made. Made by [`QueueError::service`] and
    /// [`QueueError::from_source`].
    ///
    /// `message` already says what `source` says, so that a log line showing
    /// only this error's `Display` loses nothing;
    /// [`source()`](Error::source) hands the error itself (e.g. the AWS
    /// SDK's `SdkError`) to code that wants to downcast it.
    #[non_exhaustive]
    Service {
        /// What failed, for people.
        message: String,
        /// The error that caused it, if any.
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
    /// The inbox or outbox has been closed.
    Closed,
}

impl QueueError {
    /// A [`Service`](QueueError::Service) error with no underlying error.
    pub fn service(message: impl Into<String>) -> Self {
        QueueError::Service {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Service`](QueueError::Service) error caused by `error`: the
    /// message is `"<context>: <error>"`, and `error` is kept as the source.
    pub fn from_source<E>(context: &str, error: E) -> Self
    where
        E: Error + Send + Sync + 'static,
    {
        QueueError::Service {
            message: format!("{context}: {error}"),
            source: Some(Arc::new(error)),
        }
    }

    /// Whether retrying the same call cannot succeed (the destination is
    /// missing, the message is refused as such): the caller should give up
    /// rather than leave work for redelivery.
    pub fn is_permanent(&self) -> bool {
        match self {
            QueueError::UnsupportedDestination(_)
            | QueueError::NoSuchQueue(_)
            | QueueError::NoSuchTopic(_)
            | QueueError::TooLarge { .. }
            | QueueError::TooManyAttributes { .. }
            | QueueError::InvalidReceipt => true,
            QueueError::EntryFailed { sender_fault, .. } => *sender_fault,
            QueueError::Service { .. } | QueueError::Closed => false,
        }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::UnsupportedDestination(address) => {
                write!(f, "unsupported destination {address:?}")
            }
            QueueError::NoSuchQueue(queue) => write!(f, "queue {queue:?} does not exist"),
            QueueError::NoSuchTopic(topic) => write!(f, "topic {topic:?} does not exist"),
            QueueError::TooLarge { size, limit } => write!(
                f,
                "message of {size} bytes exceeds the destination's limit of {limit} bytes"
            ),
            QueueError::TooManyAttributes { count, limit } => write!(
                f,
                "message has {count} attributes; the destination delivers at most {limit}"
            ),
            QueueError::InvalidReceipt => f.write_str("receipt is no longer valid"),
            QueueError::EntryFailed { code, message, .. } => {
                write!(f, "the broker refused the entry: {code}: {message}")
            }
            QueueError::Service { message, .. } => write!(f, "broker call failed: {message}"),
            QueueError::Closed => f.write_str("closed"),
        }
    }
}

impl Error for QueueError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            QueueError::Service {
                source: Some(source),
                ..
            } => Some(&**source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Cause;

    impl fmt::Display for Cause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the cause")
        }
    }

    impl Error for Cause {}

    #[test]
    fn the_source_is_the_error_itself_and_survives_clones() {
        let error = QueueError::from_source("sending", Cause);
        assert_eq!(error.to_string(), "broker call failed: sending: the cause");
        let clone = error.clone();
        let source = clone.source().expect("a source");
        assert_eq!(source.downcast_ref::<Cause>(), Some(&Cause));
        assert!(!clone.is_permanent());

        let plain = QueueError::service("no result");
        assert_eq!(plain.to_string(), "broker call failed: no result");
        assert!(plain.source().is_none());
    }

    #[test]
    fn messages_read_as_before() {
        let cases = [
            (
                QueueError::UnsupportedDestination("x".into()),
                "unsupported destination \"x\"",
            ),
            (
                QueueError::TooLarge { size: 2, limit: 1 },
                "message of 2 bytes exceeds the destination's limit of 1 bytes",
            ),
            (
                QueueError::EntryFailed {
                    code: "C".into(),
                    message: "m".into(),
                    sender_fault: true,
                },
                "the broker refused the entry: C: m",
            ),
            (QueueError::Closed, "closed"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}

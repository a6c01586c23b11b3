//! Provisioning SQS queues, idempotently.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::map_sdk_error;
use crate::queue::QueueError;

/// A dead-letter target for [`SqsQueueOptions::redrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqsRedrive {
    /// The dead-letter queue's ARN (see [`queue_arn`]).
    pub dead_letter_arn: String,
    /// Receives a message gets before SQS moves it to the dead-letter queue.
    pub max_receive_count: u32,
}

/// Attributes of a queue made by [`create_queue`]; `None` keeps the SQS
/// default.
///
/// Built from [`Default`] with the `with_*` methods (or by setting fields):
///
/// ```
/// # use std::time::Duration;
/// # use asyncmcp::queue::sqs::SqsQueueOptions;
/// let options = SqsQueueOptions::default()
///     .with_visibility_timeout(Duration::from_secs(60))
///     .with_fifo(true);
/// assert!(options.fifo);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqsQueueOptions {
    /// `VisibilityTimeout`.
    pub visibility_timeout: Option<Duration>,
    /// `MaximumMessageSize`, in bytes.
    pub max_message_size: Option<usize>,
    /// `FifoQueue`: the name must then end in `.fifo`.
    pub fifo: bool,
    /// `ContentBasedDeduplication` (FIFO queues only).
    pub content_based_deduplication: bool,
    /// `RedrivePolicy`.
    pub redrive: Option<SqsRedrive>,
    /// Any other attributes, set as given.
    pub extra: Vec<(QueueAttributeName, String)>,
}

impl SqsRedrive {
    /// Moves a message to the queue `dead_letter_arn` once it has been
    /// received `max_receive_count` times.
    pub fn new(dead_letter_arn: impl Into<String>, max_receive_count: u32) -> Self {
        Self {
            dead_letter_arn: dead_letter_arn.into(),
            max_receive_count,
        }
    }
}

impl SqsQueueOptions {
    /// Sets [`visibility_timeout`](Self::visibility_timeout).
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = Some(timeout);
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes);
        self
    }

    /// Sets [`fifo`](Self::fifo).
    pub fn with_fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }

    /// Sets [`content_based_deduplication`](Self::content_based_deduplication).
    pub fn with_content_based_deduplication(mut self, on: bool) -> Self {
        self.content_based_deduplication = on;
        self
    }

    /// Sets [`redrive`](Self::redrive).
    pub fn with_redrive(mut self, redrive: SqsRedrive) -> Self {
        self.redrive = Some(redrive);
        self
    }

    /// Adds an attribute to [`extra`](Self::extra).
    pub fn with_attribute(mut self, name: QueueAttributeName, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    fn attributes(&self) -> Vec<(QueueAttributeName, String)> {
        let mut attributes = Vec::new();
        if let Some(timeout) = self.visibility_timeout {
            let secs = timeout.as_secs().to_string();
            attributes.push((QueueAttributeName::VisibilityTimeout, secs));
        }
        if let Some(size) = self.max_message_size {
            attributes.push((QueueAttributeName::MaximumMessageSize, size.to_string()));
        }
        if self.fifo {
            attributes.push((QueueAttributeName::FifoQueue, "true".to_owned()));
        }
        if self.content_based_deduplication {
            let name = QueueAttributeName::ContentBasedDeduplication;
            attributes.push((name, "true".to_owned()));
        }
        if let Some(redrive) = &self.redrive {
            let policy = serde_json::json!({
                "deadLetterTargetArn": redrive.dead_letter_arn,
                "maxReceiveCount": redrive.max_receive_count.to_string(),
            });
            attributes.push((QueueAttributeName::RedrivePolicy, policy.to_string()));
        }
        attributes.extend(self.extra.iter().cloned());
        attributes
    }
}

/// Creates queue `name` and returns its URL. Idempotent: if the queue exists
/// with other attributes, SQS refuses to create it; its URL is returned then
/// too, with a warning (the attributes are left as they are).
pub async fn create_queue(
    client: &Client,
    name: &str,
    options: &SqsQueueOptions,
) -> Result<String, QueueError> {
    if options.fifo != name.ends_with(".fifo") {
        return Err(QueueError::service(format!(
            "queue {name:?}: FIFO queue names, and only they, end in \".fifo\""
        )));
    }
    let mut request = client.create_queue().queue_name(name);
    for (attribute, value) in options.attributes() {
        request = request.attributes(attribute, value);
    }
    match request.send().await {
        Ok(output) => output.queue_url.ok_or_else(|| {
            QueueError::service(format!("CreateQueue for {name:?} returned no URL"))
        }),
        Err(error) => {
            use aws_sdk_sqs::error::ProvideErrorMetadata;
            let code = error.code().unwrap_or_default();
            if code == "QueueNameExists" || code.ends_with("QueueAlreadyExists") {
                tracing::warn!(
                    queue = name,
                    "queue exists with other attributes; left as is"
                );
                queue_url(client, name).await
            } else {
                Err(map_sdk_error(error, name))
            }
        }
    }
}

/// The URL of the existing queue `name`.
pub async fn queue_url(client: &Client, name: &str) -> Result<String, QueueError> {
    client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, name))?
        .queue_url
        .ok_or_else(|| QueueError::service(format!("GetQueueUrl for {name:?} returned no URL")))
}

/// The ARN of the queue at `url` (for redrive policies and SNS subscriptions).
pub async fn queue_arn(client: &Client, url: &str) -> Result<String, QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, url))?;
    output
        .attributes
        .unwrap_or_default()
        .remove(&QueueAttributeName::QueueArn)
        .ok_or_else(|| QueueError::service(format!("no QueueArn for {url}")))
}

/// How long a dead-letter queue made by [`create_queue_with_dead_letter`]
/// keeps messages (the SQS maximum, 14 days) unless the options say
/// otherwise: SQS ages a dead message from its first enqueue, so the
/// dead-letter queue should keep messages longer than its source.
const DEAD_LETTER_RETENTION_SECS: u32 = 1_209_600;

/// The name of the dead-letter queue of queue `name`: `<name>-dlq`, or
/// `<x>-dlq.fifo` for a FIFO queue `<x>.fifo`.
fn dead_letter_name(name: &str) -> String {
    match name.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}-dlq.fifo"),
        None => format!("{name}-dlq"),
    }
}

/// Creates queue `name` and its dead-letter queue (`<name>-dlq`, or
/// `<x>-dlq.fifo` for a FIFO queue `<x>.fifo`), to which SQS moves a
/// message received more than `max_receive_count` times; returns both URLs,
/// the queue's first. Idempotent, as [`create_queue`].
///
/// The dead-letter queue gets `options` without their redrive, and keeps
/// messages 14 days unless `options.extra` sets `MessageRetentionPeriod`.
/// The queue gets `options` with a redrive to the dead-letter queue, in
/// place of any in `options`.
pub async fn create_queue_with_dead_letter(
    client: &Client,
    name: &str,
    options: &SqsQueueOptions,
    max_receive_count: u32,
) -> Result<(String, String), QueueError> {
    let mut dead_letter_options = SqsQueueOptions {
        redrive: None,
        ..options.clone()
    };
    let retention = QueueAttributeName::MessageRetentionPeriod;
    if !options.extra.iter().any(|(name, _)| *name == retention) {
        let secs = DEAD_LETTER_RETENTION_SECS.to_string();
        dead_letter_options.extra.push((retention, secs));
    }
    let dead_letter_url =
        create_queue(client, &dead_letter_name(name), &dead_letter_options).await?;
    let queue_options = SqsQueueOptions {
        redrive: Some(SqsRedrive {
            dead_letter_arn: queue_arn(client, &dead_letter_url).await?,
            max_receive_count,
        }),
        ..options.clone()
    };
    let url = create_queue(client, name, &queue_options).await?;
    Ok((url, dead_letter_url))
}

/// The `Sid` of the queue policy statement that lets `topic_arn` send:
/// `asyncmcp-sns-` and the first 16 hex digits of the ARN's SHA-256.
fn topic_statement_id(topic_arn: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(topic_arn.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("asyncmcp-sns-{hex}")
}

/// Lets the SNS topic `topic_arn` send to the queue at `queue_url`, so that the
/// queue can subscribe to it: adds to the queue's `Policy` a statement
/// allowing `sqs:SendMessage` to `sns.amazonaws.com` on condition that the
/// source is the topic.
///
/// Idempotent: the policy is written only when it lacks the statement (found
/// by its `Sid`, `asyncmcp-sns-<hash of the topic ARN>`); other statements
/// are left as they are. Read and write are two calls: two processes adding
/// statements to one queue's policy at the same moment may lose one; call it
/// again to repair.
pub async fn allow_topic(
    client: &Client,
    queue_url: &str,
    topic_arn: &str,
) -> Result<(), QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, queue_url))?;
    let mut attributes = output.attributes.unwrap_or_default();
    let queue_arn = attributes
        .remove(&QueueAttributeName::QueueArn)
        .ok_or_else(|| QueueError::service(format!("no QueueArn for {queue_url}")))?;
    let policy = attributes.remove(&QueueAttributeName::Policy);
    let Some(policy) = merge_topic_statement(policy.as_deref(), &queue_arn, topic_arn)? else {
        tracing::debug!(
            queue = queue_url,
            topic = topic_arn,
            "the topic may already send"
        );
        return Ok(());
    };
    client
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::Policy, policy)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, queue_url))?;
    tracing::debug!(
        queue = queue_url,
        topic = topic_arn,
        "allowed the topic to send"
    );
    Ok(())
}

/// Adds to the queue policy `policy` (none or empty: a new one) the
/// statement letting `topic_arn` send to `queue_arn`. `None` when the policy
/// has it already.
fn merge_topic_statement(
    policy: Option<&str>,
    queue_arn: &str,
    topic_arn: &str,
) -> Result<Option<String>, QueueError> {
    use serde_json::{Value, json};
    let invalid = |why: &str| QueueError::service(format!("the policy of {queue_arn} {why}"));
    let mut policy = match policy.map(str::trim).filter(|p| !p.is_empty()) {
        None => json!({ "Version": "2012-10-17", "Statement": [] }),
        Some(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| invalid(&format!("is not JSON: {e}")))?,
    };
    let document = policy
        .as_object_mut()
        .ok_or_else(|| invalid("is not a JSON object"))?;
    let statements = document
        .entry("Statement")
        .or_insert_with(|| Value::Array(Vec::new()));
    if statements.is_object() {
        *statements = Value::Array(vec![statements.take()]);
    }
    let statements = statements
        .as_array_mut()
        .ok_or_else(|| invalid("has a Statement that is neither a list nor an object"))?;
    let sid = topic_statement_id(topic_arn);
    if statements
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(&sid))
    {
        return Ok(None);
    }
    statements.push(json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": { "Service": "sns.amazonaws.com" },
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": { "ArnEquals": { "aws:SourceArn": topic_arn } },
    }));
    Ok(Some(policy.to_string()))
}

/// Deletes the queue at `url`. Idempotent: a missing queue is not an error.
pub async fn delete_queue(client: &Client, url: &str) -> Result<(), QueueError> {
    match client.delete_queue().queue_url(url).send().await {
        Ok(_) => Ok(()),
        Err(error) => match map_sdk_error(error, url) {
            QueueError::NoSuchQueue(_) => Ok(()),
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_queues_are_named_after_their_queue() {
        assert_eq!(dead_letter_name("requests"), "requests-dlq");
        assert_eq!(dead_letter_name("requests.fifo"), "requests-dlq.fifo");
    }

    #[test]
    fn topic_statements_merge_once() {
        let queue = "arn:aws:sqs:us-east-1:000000000000:q";
        let topic = "arn:aws:sns:us-east-1:000000000000:t";
        let other = "arn:aws:sns:us-east-1:000000000000:u";
        let sid = topic_statement_id(topic);
        assert!(sid.starts_with("asyncmcp-sns-") && sid.len() == 29, "{sid}");
        assert_eq!(sid, topic_statement_id(topic));
        assert_ne!(sid, topic_statement_id(other));

        let fresh = merge_topic_statement(None, queue, topic).unwrap().unwrap();
        assert_eq!(
            merge_topic_statement(Some(" "), queue, topic).unwrap(),
            Some(fresh.clone())
        );
        let parsed: serde_json::Value = serde_json::from_str(&fresh).unwrap();
        assert_eq!(parsed["Version"], "2012-10-17");
        let statement = &parsed["Statement"][0];
        assert_eq!(statement["Sid"], sid.as_str());
        assert_eq!(statement["Principal"]["Service"], "sns.amazonaws.com");
        assert_eq!(statement["Action"], "sqs:SendMessage");
        assert_eq!(statement["Resource"], queue);
        assert_eq!(statement["Condition"]["ArnEquals"]["aws:SourceArn"], topic);

        // Already there: nothing to write.
        assert_eq!(
            merge_topic_statement(Some(&fresh), queue, topic).unwrap(),
            None
        );

        // Another topic is added; a foreign statement (even a lone object) stays.
        let foreign =
            r#"{"Version":"2012-10-17","Id":"mine","Statement":{"Sid":"keep","Effect":"Deny"}}"#;
        let merged = merge_topic_statement(Some(foreign), queue, other)
            .unwrap()
            .unwrap();
        let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(merged["Id"], "mine");
        let statements = merged["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Sid"], "keep");
        assert_eq!(statements[1]["Sid"], topic_statement_id(other).as_str());

        assert!(merge_topic_statement(Some("not json"), queue, topic).is_err());
        assert!(merge_topic_statement(Some("[]"), queue, topic).is_err());
    }

    #[test]
    fn options_become_attributes() {
        let options = SqsQueueOptions::default()
            .with_visibility_timeout(Duration::from_secs(45))
            .with_max_message_size(2048)
            .with_fifo(true)
            .with_content_based_deduplication(true)
            .with_redrive(SqsRedrive::new("arn:aws:sqs:us-east-1:000000000000:dlq", 3))
            .with_attribute(QueueAttributeName::DelaySeconds, "5");
        let attributes = options.attributes();
        for expected in [
            (QueueAttributeName::VisibilityTimeout, "45"),
            (QueueAttributeName::MaximumMessageSize, "2048"),
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::ContentBasedDeduplication, "true"),
            (QueueAttributeName::DelaySeconds, "5"),
        ] {
            let expected = (expected.0, expected.1.to_owned());
            assert!(attributes.contains(&expected), "{expected:?}");
        }
        let (_, policy) = attributes
            .iter()
            .find(|(name, _)| *name == QueueAttributeName::RedrivePolicy)
            .unwrap();
        let policy: serde_json::Value = serde_json::from_str(policy).unwrap();
        assert_eq!(policy["maxReceiveCount"], "3");
        assert!(SqsQueueOptions::default().attributes().is_empty());
    }
}

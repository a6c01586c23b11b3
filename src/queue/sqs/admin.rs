//! Provisioning SQS queues, idempotently.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::map_sdk_error;
use crate::queue::QueueError;

/// A dead-letter target for [`SqsQueueOptions::redrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsRedrive {
    /// The dead-letter queue's ARN (see [`queue_arn`]).
    pub dead_letter_arn: String,
    /// Receives a message gets before SQS moves it to the dead-letter queue.
    pub max_receive_count: u32,
}

/// Attributes of a queue made by [`create_queue`]; `None` keeps the SQS
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

impl SqsQueueOptions {
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
        return Err(QueueError::Service(format!(
            "queue {name:?}: FIFO queue names, and only they, end in \".fifo\""
        )));
    }
    let mut request = client.create_queue().queue_name(name);
    for (attribute, value) in options.attributes() {
        request = request.attributes(attribute, value);
    }
    match request.send().await {
        Ok(output) => output.queue_url.ok_or_else(|| {
            QueueError::Service(format!("CreateQueue for {name:?} returned no URL"))
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
        .ok_or_else(|| QueueError::Service(format!("GetQueueUrl for {name:?} returned no URL")))
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
        .ok_or_else(|| QueueError::Service(format!("no QueueArn for {url}")))
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
    fn options_become_attributes() {
        let options = SqsQueueOptions {
            visibility_timeout: Some(Duration::from_secs(45)),
            fifo: true,
            redrive: Some(SqsRedrive {
                dead_letter_arn: "arn:aws:sqs:us-east-1:000000000000:dlq".to_owned(),
                max_receive_count: 3,
            }),
            ..SqsQueueOptions::default()
        };
        let attributes = options.attributes();
        assert!(attributes.contains(&(QueueAttributeName::VisibilityTimeout, "45".to_owned())));
        assert!(attributes.contains(&(QueueAttributeName::FifoQueue, "true".to_owned())));
        let (_, policy) = attributes
            .iter()
            .find(|(name, _)| *name == QueueAttributeName::RedrivePolicy)
            .unwrap();
        let policy: serde_json::Value = serde_json::from_str(policy).unwrap();
        assert_eq!(policy["maxReceiveCount"], "3");
        assert!(SqsQueueOptions::default().attributes().is_empty());
    }
}

//! Provisioning SNS topics and their queue subscriptions, idempotently.

use aws_sdk_sns::Client;
use aws_sdk_sns::error::ProvideErrorMetadata;

use super::{is_conflict, is_missing, map_sdk_error};
use crate::queue::QueueError;
use crate::queue::sqs;

/// Attributes of a topic made by [`create_topic`].
///
/// Built from [`Default`] with the `with_*` methods (or by setting fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnsTopicOptions {
    /// `FifoTopic`: the name must then end in `.fifo`, and every message
    /// needs a [`group_id`](crate::queue::QueueMessage::group_id). A FIFO
    /// topic delivers only to FIFO queues.
    pub fifo: bool,
    /// `ContentBasedDeduplication` (FIFO topics only).
    pub content_based_deduplication: bool,
}

impl SnsTopicOptions {
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

    fn attributes(&self) -> Vec<(&'static str, &'static str)> {
        let mut attributes = Vec::new();
        if self.fifo {
            attributes.push(("FifoTopic", "true"));
        }
        if self.content_based_deduplication {
            attributes.push(("ContentBasedDeduplication", "true"));
        }
        attributes
    }
}

/// Attributes of a queue subscription made by [`subscribe_queue`].
///
/// Built from [`Default`] with the `with_*` methods (or by setting fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionOptions {
    /// `RawMessageDelivery`: the queue receives the published body and
    /// attributes as they are. Otherwise it receives SNS's JSON envelope
    /// (`"Type": "Notification"`, the body as `Message`, the attributes as
    /// `MessageAttributes`) with no message attributes.
    pub raw_message_delivery: bool,
    /// `FilterPolicy` on message attributes (scope `MessageAttributes`): the
    /// queue receives only the messages it matches. See [`filter_on`].
    pub filter_policy: Option<serde_json::Value>,
    /// The ARN of an SQS queue where SNS puts the messages it cannot deliver
    /// to the subscribed queue (the subscription's `RedrivePolicy`). SNS must
    /// be allowed to write to it too
    /// ([`allow_topic`](crate::queue::sqs::allow_topic)).
    pub dead_letter_arn: Option<String>,
}

impl SubscriptionOptions {
    /// Sets [`raw_message_delivery`](Self::raw_message_delivery).
    pub fn with_raw_message_delivery(mut self, raw: bool) -> Self {
        self.raw_message_delivery = raw;
        self
    }

    /// Sets [`filter_policy`](Self::filter_policy) (see [`filter_on`]).
    pub fn with_filter_policy(mut self, policy: serde_json::Value) -> Self {
        self.filter_policy = Some(policy);
        self
    }

    /// Sets [`dead_letter_arn`](Self::dead_letter_arn).
    pub fn with_dead_letter_arn(mut self, arn: impl Into<String>) -> Self {
        self.dead_letter_arn = Some(arn.into());
        self
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![("RawMessageDelivery", self.raw_message_delivery.to_string())];
        if let Some(policy) = &self.filter_policy {
            attributes.push(("FilterPolicy", policy.to_string()));
            attributes.push(("FilterPolicyScope", "MessageAttributes".to_owned()));
        }
        if let Some(arn) = &self.dead_letter_arn {
            let policy = serde_json::json!({ "deadLetterTargetArn": arn });
            attributes.push(("RedrivePolicy", policy.to_string()));
        }
        attributes
    }
}

/// A filter policy that lets through only messages whose `attribute` is one
/// of `values`: `{"<attribute>": ["<value>", ...]}`, for
/// [`SubscriptionOptions::filter_policy`].
pub fn filter_on(attribute: &str, values: &[&str]) -> serde_json::Value {
    serde_json::json!({ attribute: values })
}

/// Creates topic `name` and returns its ARN. Idempotent: `CreateTopic` of
/// an existing topic returns its ARN; should SNS refuse because the topic
/// exists with other attributes, the ARN is looked up (`ListTopics`) and
/// returned with a warning (the attributes are left as they are).
pub async fn create_topic(
    client: &Client,
    name: &str,
    options: &SnsTopicOptions,
) -> Result<String, QueueError> {
    if options.fifo != name.ends_with(".fifo") {
        return Err(QueueError::service(format!(
            "topic {name:?}: FIFO topic names, and only they, end in \".fifo\""
        )));
    }
    if options.content_based_deduplication && !options.fifo {
        return Err(QueueError::service(format!(
            "topic {name:?}: content-based deduplication needs a FIFO topic"
        )));
    }
    let mut request = client.create_topic().name(name);
    for (attribute, value) in options.attributes() {
        request = request.attributes(attribute, value);
    }
    match request.send().await {
        Ok(output) => output.topic_arn.ok_or_else(|| {
            QueueError::service(format!("CreateTopic for {name:?} returned no ARN"))
        }),
        Err(error)
            if is_conflict(
                error.code().unwrap_or_default(),
                error.message().unwrap_or_default(),
            ) =>
        {
            tracing::warn!(
                topic = name,
                "topic exists with other attributes; left as is"
            );
            match find_topic(client, name).await? {
                Some(arn) => Ok(arn),
                None => Err(map_sdk_error(error, name)),
            }
        }
        Err(error) => Err(map_sdk_error(error, name)),
    }
}

/// The ARN of this account's topic `name` in the client's region, if any.
async fn find_topic(client: &Client, name: &str) -> Result<Option<String>, QueueError> {
    let suffix = format!(":{name}");
    let mut topics = client.list_topics().into_paginator().items().send();
    while let Some(topic) = topics.next().await {
        let topic = topic.map_err(|e| map_sdk_error(e, name))?;
        if let Some(arn) = topic.topic_arn.filter(|arn| arn.ends_with(&suffix)) {
            return Ok(Some(arn));
        }
    }
    Ok(None)
}

/// Deletes the topic `arn` and with it its subscriptions. Idempotent: a
/// missing topic is not an error.
pub async fn delete_topic(client: &Client, arn: &str) -> Result<(), QueueError> {
    match client.delete_topic().topic_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(error) => match map_sdk_error(error, arn) {
            QueueError::NoSuchTopic(_) => Ok(()),
            other => Err(other),
        },
    }
}

/// Subscribes the SQS queue at `queue_url` to `topic_arn` and returns the
/// subscription's ARN.
///
/// First lets the topic write to the queue
/// ([`allow_topic`](crate::queue::sqs::allow_topic)), and to the
/// subscription's dead-letter queue when `options` name one (it must be in
/// the same account and region as the client), then subscribes the queue's
/// ARN (protocol `sqs`) with `options`. Idempotent: subscribing an
/// already subscribed queue returns the existing subscription; if it has
/// other attributes (SNS then refuses the `Subscribe`), it is found
/// (`ListSubscriptionsByTopic`) and updated with `SetSubscriptionAttributes`:
/// `RawMessageDelivery` and `FilterPolicy` are set as `options` say (no
/// filter policy removes the existing one), and `RedrivePolicy` when
/// `options` name a dead-letter queue. An existing redrive policy is left in
/// place when they do not: SNS refuses to set it to nothing.
pub async fn subscribe_queue(
    sns: &Client,
    sqs: &sqs::Client,
    topic_arn: &str,
    queue_url: &str,
    options: &SubscriptionOptions,
) -> Result<String, QueueError> {
    sqs::allow_topic(sqs, queue_url, topic_arn).await?;
    if let Some(dead_letter_arn) = &options.dead_letter_arn {
        // SNS itself moves undeliverable messages there: it needs the same
        // permission as on the subscribed queue.
        let name = dead_letter_arn.rsplit(':').next().unwrap_or_default();
        let dead_letter_url = sqs::queue_url(sqs, name).await?;
        sqs::allow_topic(sqs, &dead_letter_url, topic_arn).await?;
    }
    let endpoint = sqs::queue_arn(sqs, queue_url).await?;
    let mut request = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(&endpoint)
        .return_subscription_arn(true);
    for (attribute, value) in options.attributes() {
        request = request.attributes(attribute, value);
    }
    match request.send().await {
        Ok(output) => output
            .subscription_arn
            .ok_or_else(|| QueueError::service(format!("Subscribe of {endpoint} returned no ARN"))),
        Err(error)
            if is_conflict(
                error.code().unwrap_or_default(),
                error.message().unwrap_or_default(),
            ) =>
        {
            let Some(arn) = find_subscription(sns, topic_arn, &endpoint).await? else {
                return Err(map_sdk_error(error, topic_arn));
            };
            tracing::info!(
                subscription = %arn,
                "queue already subscribed with other attributes; updating them"
            );
            update_subscription(sns, &arn, options).await?;
            Ok(arn)
        }
        Err(error) => Err(map_sdk_error(error, topic_arn)),
    }
}

/// The ARN of `topic_arn`'s subscription of the SQS queue `queue_arn`, if
/// any.
async fn find_subscription(
    client: &Client,
    topic_arn: &str,
    queue_arn: &str,
) -> Result<Option<String>, QueueError> {
    let mut subscriptions = client
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .into_paginator()
        .items()
        .send();
    while let Some(subscription) = subscriptions.next().await {
        let subscription = subscription.map_err(|e| map_sdk_error(e, topic_arn))?;
        if subscription.protocol.as_deref() == Some("sqs")
            && subscription.endpoint.as_deref() == Some(queue_arn)
        {
            return Ok(subscription.subscription_arn);
        }
    }
    Ok(None)
}

/// Sets an existing subscription's attributes to those of `options`.
async fn update_subscription(
    client: &Client,
    arn: &str,
    options: &SubscriptionOptions,
) -> Result<(), QueueError> {
    let mut attributes = options.attributes();
    if options.filter_policy.is_none() {
        // An empty filter policy removes it (its scope goes with it).
        attributes.push(("FilterPolicy", String::new()));
    }
    for (attribute, value) in attributes {
        client
            .set_subscription_attributes()
            .subscription_arn(arn)
            .attribute_name(attribute)
            .attribute_value(value)
            .send()
            .await
            .map_err(|e| match map_sdk_error(e, arn) {
                QueueError::NoSuchTopic(_) => {
                    QueueError::service(format!("subscription {arn} does not exist"))
                }
                other => other,
            })?;
    }
    Ok(())
}

/// Deletes the subscription `subscription_arn`. Idempotent: a missing
/// subscription is not an error.
pub async fn unsubscribe(client: &Client, subscription_arn: &str) -> Result<(), QueueError> {
    match client
        .unsubscribe()
        .subscription_arn(subscription_arn)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_missing(error.code().unwrap_or_default()) => Ok(()),
        Err(error) => Err(map_sdk_error(error, subscription_arn)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_policies_match_attribute_values() {
        assert_eq!(
            filter_on("ClientId", &["a", "b"]),
            serde_json::json!({ "ClientId": ["a", "b"] })
        );
    }

    #[test]
    fn options_become_attributes() {
        let options = SubscriptionOptions::default()
            .with_raw_message_delivery(true)
            .with_filter_policy(filter_on("k", &["v"]))
            .with_dead_letter_arn("arn:aws:sqs:us-east-1:000000000000:dlq");
        let attributes = options.attributes();
        assert!(attributes.contains(&("RawMessageDelivery", "true".to_owned())));
        assert!(attributes.contains(&("FilterPolicy", r#"{"k":["v"]}"#.to_owned())));
        assert!(attributes.contains(&("FilterPolicyScope", "MessageAttributes".to_owned())));
        let (_, redrive) = attributes
            .iter()
            .find(|(name, _)| *name == "RedrivePolicy")
            .unwrap();
        let redrive: serde_json::Value = serde_json::from_str(redrive).unwrap();
        assert_eq!(
            redrive["deadLetterTargetArn"],
            "arn:aws:sqs:us-east-1:000000000000:dlq"
        );
        assert_eq!(
            SubscriptionOptions::default().attributes(),
            vec![("RawMessageDelivery", "false".to_owned())]
        );
        let fifo = SnsTopicOptions::default()
            .with_fifo(true)
            .with_content_based_deduplication(true);
        assert_eq!(
            fifo.attributes(),
            vec![("FifoTopic", "true"), ("ContentBasedDeduplication", "true")]
        );
        assert!(SnsTopicOptions::default().attributes().is_empty());
    }
}

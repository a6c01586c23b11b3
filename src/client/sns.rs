//! Connecting a [`QueueClientTransport`] to a server behind an SNS topic.

use std::sync::Arc;

use crate::queue::sns::{self, SnsOutbox, SubscriptionOptions};
use crate::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use crate::queue::{QueueError, RoutingOutbox};

use super::{ClientError, OnClose, QueueClientBuilder, QueueClientTransport};

/// How replies reach a client of
/// [`connect_sns_sqs`](QueueClientBuilder::connect_sns_sqs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnsReplies {
    /// A reply topic and queue of this client's own, created on connect and
    /// deleted on close: the queue is subscribed to the topic with raw
    /// delivery and the topic is named as the reply address. Works with any
    /// server, including Python asyncmcp's (which replies to the topic a
    /// client names).
    OwnTopic,
    /// One reply topic shared by many clients (the server is configured with
    /// it, see `QueueServerBuilder::shared_reply_address`, or clients name
    /// it). A queue of this client's own is created on connect and subscribed
    /// with raw delivery and a filter policy on its `ClientId`, so it gets
    /// only its own replies; both are removed on close. Needs a server that
    /// stamps `ClientId` on replies, as this crate's does.
    SharedTopic(String),
    /// Provisioned beforehand: replies are published to `topic_arn` and
    /// arrive on `queue_url`. Nothing is created or removed.
    Existing {
        /// The queue subscribed to the reply topic.
        queue_url: String,
        /// The topic replies are published to.
        topic_arn: String,
    },
}

/// What connect created, removed on close (or on a failed connect).
#[derive(Default)]
struct Provisioned {
    queue_url: Option<String>,
    topic_arn: Option<String>,
    subscription_arn: Option<String>,
}

impl Provisioned {
    async fn remove(self, sqs_client: &sqs::Client, sns_client: &sns::Client) {
        if let Some(arn) = &self.subscription_arn
            && let Err(error) = sns::unsubscribe(sns_client, arn).await
        {
            tracing::warn!(subscription = %arn, %error, "could not remove reply subscription");
        }
        if let Some(arn) = &self.topic_arn
            && let Err(error) = sns::delete_topic(sns_client, arn).await
        {
            tracing::warn!(topic = %arn, %error, "could not delete reply topic");
        }
        if let Some(url) = &self.queue_url
            && let Err(error) = sqs::delete_queue(sqs_client, url).await
        {
            tracing::warn!(reply_queue = %url, %error, "could not delete reply queue");
        }
    }
}

impl QueueClientTransport {
    /// A client of the server whose request queue is subscribed to the SNS
    /// topic `topic_arn`, with the AWS settings of the environment
    /// ([`sqs::sdk_config_from_env`]) and a reply topic and queue of its
    /// own ([`SnsReplies::OwnTopic`]), created now and deleted on close.
    /// The builder's [`connect_sns_sqs`](QueueClientBuilder::connect_sns_sqs)
    /// takes settings.
    pub async fn sns_sqs(topic_arn: &str) -> Result<Self, ClientError> {
        let sdk = sqs::sdk_config_from_env().await;
        Self::builder(topic_arn)
            .connect_sns_sqs(&sqs::client(&sdk), &sns::client(&sdk), SnsReplies::OwnTopic)
            .await
    }
}

impl QueueClientBuilder {
    /// Connects to a server whose request queue is subscribed to the SNS
    /// topic that is the builder's server address: requests are published
    /// to that topic, and replies come back as `replies` says. Messages with
    /// more than 10 attributes or larger than the topic accepts (256 KiB)
    /// are refused with an error to the caller, never dropped.
    pub async fn connect_sns_sqs(
        mut self,
        sqs_client: &sqs::Client,
        sns_client: &sns::Client,
        replies: SnsReplies,
    ) -> Result<QueueClientTransport, ClientError> {
        let (sqs_client, sns_client) = (sqs_client.clone(), sns_client.clone());
        let outbox = RoutingOutbox::new()
            .with(Arc::new(SnsOutbox::new(sns_client.clone())))
            .with(Arc::new(SqsOutbox::new(sqs_client.clone())));
        let client_id = super::connection_id(&self.config.client_id);
        let (queue_url, topic_arn, provisioned) = match replies {
            SnsReplies::Existing {
                queue_url,
                topic_arn,
            } => (queue_url, topic_arn, None),
            replies => {
                let mut provisioned = Provisioned::default();
                match provision(
                    &sqs_client,
                    &sns_client,
                    &client_id,
                    replies,
                    &mut provisioned,
                )
                .await
                {
                    Ok((queue_url, topic_arn)) => (queue_url, topic_arn, Some(provisioned)),
                    Err(error) => {
                        provisioned.remove(&sqs_client, &sns_client).await;
                        return Err(error.into());
                    }
                }
            }
        };
        let inbox = match SqsInbox::open(sqs_client.clone(), &queue_url).await {
            Ok(inbox) => inbox,
            Err(error) => {
                if let Some(provisioned) = provisioned {
                    provisioned.remove(&sqs_client, &sns_client).await;
                }
                return Err(error.into());
            }
        };
        self.config.reply_address = Some(topic_arn);
        let transport = self.build_as(inbox, outbox, client_id);
        Ok(match provisioned {
            Some(provisioned) => {
                let cleanup: OnClose = Box::new(move || {
                    Box::pin(async move { provisioned.remove(&sqs_client, &sns_client).await })
                });
                transport.on_close(cleanup)
            }
            None => transport,
        })
    }
}

/// Creates the reply queue, and the topic or subscription `replies` needs,
/// recording each in `provisioned` as it goes. Returns the queue URL and the
/// reply topic ARN.
async fn provision(
    sqs_client: &sqs::Client,
    sns_client: &sns::Client,
    client_id: &str,
    replies: SnsReplies,
    provisioned: &mut Provisioned,
) -> Result<(String, String), QueueError> {
    let name = format!("asyncmcp-reply-{}", uuid::Uuid::new_v4().simple());
    let queue_url = sqs::create_queue(sqs_client, &name, &SqsQueueOptions::default()).await?;
    provisioned.queue_url = Some(queue_url.clone());
    let (topic_arn, filter_policy) = match replies {
        SnsReplies::SharedTopic(topic_arn) => (
            topic_arn,
            Some(sns::filter_on(crate::wire::attr::CLIENT_ID, &[client_id])),
        ),
        _ => {
            let topic_arn =
                sns::create_topic(sns_client, &name, &sns::SnsTopicOptions::default()).await?;
            provisioned.topic_arn = Some(topic_arn.clone());
            (topic_arn, None)
        }
    };
    let options = SubscriptionOptions {
        raw_message_delivery: true,
        filter_policy,
        ..SubscriptionOptions::default()
    };
    let subscription =
        sns::subscribe_queue(sns_client, sqs_client, &topic_arn, &queue_url, &options).await?;
    provisioned.subscription_arn = Some(subscription);
    tracing::info!(reply_queue = %queue_url, reply_topic = %topic_arn, "provisioned replies");
    Ok((queue_url, topic_arn))
}

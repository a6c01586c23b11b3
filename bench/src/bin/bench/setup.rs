//! Fresh queues (and topics) for each measured stack, removed afterwards.

use asyncmcp::queue::sns::{self, SubscriptionOptions};
use asyncmcp::queue::sqs::{self, SqsQueueOptions};

/// Where one stack's requests and replies go.
pub struct Endpoints {
    /// The queue the server receives requests from.
    pub request_queue: String,
    /// Where clients send requests: that queue, or the topic it subscribes to.
    pub request_address: String,
    /// The queue the client receives replies from.
    pub reply_queue: String,
    /// Where the server sends replies: that queue, or the topic it subscribes to.
    pub reply_address: String,
    topics: Vec<String>,
}

/// AWS clients for provisioning (not counted: set-up is not part of a call).
pub struct Admin {
    sqs: sqs::Client,
    sns: sns::Client,
}

impl Admin {
    /// Clients from the environment (`AWS_ENDPOINT_URL` etc.).
    pub async fn from_env() -> Self {
        let sdk = sqs::sdk_config_from_env().await;
        Self {
            sqs: sqs::client(&sdk),
            sns: sns::client(&sdk),
        }
    }

    /// A request queue and a reply queue.
    pub async fn queues(&self, run: &str) -> anyhow::Result<Endpoints> {
        let options = SqsQueueOptions::default();
        let request_queue = sqs::create_queue(&self.sqs, &name(run, "requests"), &options).await?;
        let reply_queue = sqs::create_queue(&self.sqs, &name(run, "replies"), &options).await?;
        Ok(Endpoints {
            request_address: request_queue.clone(),
            reply_address: reply_queue.clone(),
            request_queue,
            reply_queue,
            topics: Vec::new(),
        })
    }

    /// A request topic and a reply topic, each with a queue subscribed with
    /// raw delivery.
    pub async fn topics(&self, run: &str) -> anyhow::Result<Endpoints> {
        let mut endpoints = self.queues(run).await?;
        let raw = SubscriptionOptions::default().with_raw_message_delivery(true);
        for (what, queue) in [
            ("requests", endpoints.request_queue.clone()),
            ("replies", endpoints.reply_queue.clone()),
        ] {
            let topic = sns::create_topic(&self.sns, &name(run, what), &Default::default()).await?;
            sns::subscribe_queue(&self.sns, &self.sqs, &topic, &queue, &raw).await?;
            endpoints.topics.push(topic);
        }
        endpoints.request_address = endpoints.topics[0].clone();
        endpoints.reply_address = endpoints.topics[1].clone();
        Ok(endpoints)
    }

    /// Deletes what [`queues`](Self::queues) or [`topics`](Self::topics) made.
    pub async fn remove(&self, endpoints: Endpoints) -> anyhow::Result<()> {
        // Deleting a topic removes its subscriptions.
        for topic in &endpoints.topics {
            sns::delete_topic(&self.sns, topic).await?;
        }
        for queue in [&endpoints.request_queue, &endpoints.reply_queue] {
            sqs::delete_queue(&self.sqs, queue).await?;
        }
        Ok(())
    }
}

fn name(run: &str, what: &str) -> String {
    format!("bench-{run}-{what}-{}", uuid::Uuid::new_v4().simple())
}

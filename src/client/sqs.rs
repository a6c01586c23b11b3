//! Connecting a [`QueueClientTransport`] to a server on Amazon SQS.

use crate::queue::sqs::{self, Client, SqsInbox, SqsOutbox, SqsQueueOptions};

use super::{ClientError, QueueClientBuilder, QueueClientTransport};

impl QueueClientTransport {
    /// A client of the server whose request queue is `queue_url`, with the
    /// AWS settings of the environment ([`sqs::sdk_config_from_env`]) and a
    /// reply queue of its own, created now and deleted on close; the
    /// defaults otherwise. The builder's
    /// [`connect_sqs`](QueueClientBuilder::connect_sqs) takes settings.
    pub async fn sqs(queue_url: &str) -> Result<Self, ClientError> {
        let sdk = sqs::sdk_config_from_env().await;
        Self::builder(queue_url)
            .connect_sqs(&sqs::client(&sdk))
            .await
    }
}

impl QueueClientBuilder {
    /// Receives replies on `url`, an existing queue (perhaps shared with
    /// other clients), instead of a queue of this client's own created on
    /// connect. Used by [`connect_sqs`](Self::connect_sqs).
    pub fn reply_queue(mut self, url: impl Into<String>) -> Self {
        self.reply_queue = Some(url.into());
        self
    }

    /// Connects to a server whose request queue is the builder's server
    /// address, through `client`.
    ///
    /// Replies come back on the [`reply_queue`](Self::reply_queue) when one
    /// was given; otherwise a queue named `asyncmcp-reply-<uuid>` is created
    /// now (in the account and region of `client`) and deleted when the
    /// transport closes.
    pub async fn connect_sqs(
        mut self,
        client: &Client,
    ) -> Result<QueueClientTransport, ClientError> {
        let outbox = SqsOutbox::new(client.clone());
        if let Some(url) = self.reply_queue.take() {
            let inbox = SqsInbox::open(client.clone(), &url).await?;
            return Ok(self.build(inbox, outbox));
        }
        let name = format!("asyncmcp-reply-{}", uuid::Uuid::new_v4().simple());
        let url = sqs::create_queue(client, &name, &SqsQueueOptions::default()).await?;
        let inbox = match SqsInbox::open(client.clone(), &url).await {
            Ok(inbox) => inbox,
            Err(error) => {
                let _ = sqs::delete_queue(client, &url).await;
                return Err(error.into());
            }
        };
        tracing::info!(reply_queue = %url, "created reply queue");
        let client = client.clone();
        Ok(self.build(inbox, outbox).on_close(Box::new(move || {
            Box::pin(async move {
                if let Err(error) = sqs::delete_queue(&client, &url).await {
                    tracing::warn!(reply_queue = %url, %error, "could not delete reply queue");
                }
            })
        })))
    }
}

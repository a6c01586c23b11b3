//! Connecting a [`QueueClientTransport`] to a server on Amazon SQS.

use crate::queue::sqs::{self, Client, SqsInbox, SqsOutbox, SqsQueueOptions};

use super::{ClientError, QueueClientConfig, QueueClientTransport};

impl QueueClientTransport {
    /// A client of the server whose request queue is `config.server_address`.
    ///
    /// Replies come back on `reply_queue_url`; when it is `None`, a queue
    /// named `asyncmcp-reply-<uuid>` is created now (in the account and
    /// region of `client`) and deleted when the transport closes.
    pub async fn connect_sqs(
        client: Client,
        config: QueueClientConfig,
        reply_queue_url: Option<&str>,
    ) -> Result<Self, ClientError> {
        let outbox = SqsOutbox::new(client.clone());
        match reply_queue_url {
            Some(url) => {
                let inbox = SqsInbox::open(client, url).await?;
                Ok(Self::new(inbox, outbox, config))
            }
            None => {
                let name = format!("asyncmcp-reply-{}", uuid::Uuid::new_v4().simple());
                let url = sqs::create_queue(&client, &name, &SqsQueueOptions::default()).await?;
                let inbox = match SqsInbox::open(client.clone(), &url).await {
                    Ok(inbox) => inbox,
                    Err(error) => {
                        let _ = sqs::delete_queue(&client, &url).await;
                        return Err(error.into());
                    }
                };
                tracing::info!(reply_queue = %url, "created reply queue");
                Ok(Self::new(inbox, outbox, config).on_close(Box::new(move || {
                    Box::pin(async move {
                        if let Err(error) = sqs::delete_queue(&client, &url).await {
                            tracing::warn!(reply_queue = %url, %error, "could not delete reply queue");
                        }
                    })
                })))
            }
        }
    }
}

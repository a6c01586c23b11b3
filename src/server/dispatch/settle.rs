//! Settling a delivery: the late-ack rules in one place.
//!
//! A message is removed (acked) only once its answer is sent, or when the
//! answer can never be sent (logged). When a send fails for a passing
//! reason, the message is left for a redelivery soon ([`retry_soon`]), which
//! is answered then (from the replay cache when the answer was kept). A
//! request abandoned at shutdown is released for another replica at once.
//! A response that can never be sent dead-letters its request with the
//! reason when dead-lettering is configured, and removes it otherwise.
//! A request its handler gave back ([`Redeliver`](crate::server::Redeliver))
//! is left for redelivery, like a failed send, and dead-lettered with the
//! handler's reason on its last allowed delivery.
//!
//! [`retry_soon`]: Shared::retry_soon

use super::Shared;
use crate::queue::Delivery;
use crate::server::ServiceFactory;
use crate::server::dead_letter;
use crate::server::replay;
use crate::server::request::{Finished, Outcome, ReplyError};

impl<F: ServiceFactory> Shared<F> {
    /// Settles a request that ran, as its outcome says; `request` is what
    /// dead-lettering it needs, when its final response could not be sent on
    /// its last allowed delivery, or can never be sent.
    pub(super) async fn settle_run(&self, finished: Finished, request: dead_letter::Request<'_>) {
        let delivery = request.delivery;
        let Finished {
            outcome,
            redeliver_reason,
            reply_error,
            ..
        } = finished;
        let why = reply_error
            .map(|error| format!(": {error}"))
            .unwrap_or_default();
        match outcome {
            Outcome::Answered | Outcome::Cancelled => self.ack(delivery).await,
            // With dead-lettering configured, a response that can never be
            // sent (e.g. a webhook that refused it, or stayed down through
            // all its retries) leaves the request in the dead-letter queue
            // with the reason, rather than nowhere.
            Outcome::Undeliverable if self.config.dead_letter.is_some() => {
                let reason = format!(
                    "the final response can never be sent (delivery {}){why}",
                    delivery.receive_count
                );
                Box::pin(self.dead_letter(request, &reason)).await;
            }
            Outcome::Undeliverable => {
                tracing::warn!("reply address refuses the response for good; request removed");
                self.ack(delivery).await
            }
            Outcome::Abandoned => {
                if let Err(error) = self.inbox.release(&delivery.receipt).await {
                    tracing::warn!(%error, "could not release request; it reappears after its visibility timeout");
                }
            }
            Outcome::Redeliver => {
                let reason = redeliver_reason
                    .unwrap_or_else(|| "the handler gave the request back".to_owned());
                if self.is_last_attempt(delivery) {
                    let reason = format!("{reason} (on delivery {})", delivery.receive_count);
                    Box::pin(self.dead_letter(request, &reason)).await;
                } else {
                    tracing::warn!(%reason, receive_count = delivery.receive_count, "handler gave the request back; left for redelivery");
                    self.retry_soon(delivery).await;
                }
            }
            Outcome::ReplyFailed => {
                if self.is_last_attempt(delivery) {
                    let reason = format!(
                        "the final response could not be sent on delivery {}{why}",
                        delivery.receive_count
                    );
                    // Boxed, as a rare path: inline, its state would enlarge
                    // the future of every request.
                    Box::pin(self.dead_letter(request, &reason)).await;
                } else {
                    // Not acked: the request is redelivered soon and
                    // answered then, from the replay cache.
                    self.retry_soon(delivery).await;
                }
            }
        }
    }

    /// Settles a duplicate answered from the replay cache: left for
    /// redelivery, to be replayed then, when the send failed for a passing
    /// reason; removed otherwise.
    pub(super) async fn settle_replayed(&self, delivery: &Delivery, sent: Result<(), ReplyError>) {
        match sent {
            Err(error) if !error.is_permanent() => self.retry_soon(delivery).await,
            _ => self.ack(delivery).await,
        }
    }

    /// Settles a message whose answer (a result, or an error in its place)
    /// was sent as `sent` says, by the late-ack rule: removed once the
    /// answer is sent, or when it can never be (logged); left for a
    /// redelivery soon when it failed for a passing reason.
    pub(in crate::server) async fn settle_answered(
        &self,
        delivery: &Delivery,
        sent: Result<(), ReplyError>,
    ) {
        match sent {
            Ok(()) => self.ack(delivery).await,
            Err(error) if error.is_permanent() => {
                tracing::error!(message_id = %delivery.message_id, %error, "the answer can never be sent; message removed");
                self.ack(delivery).await;
            }
            Err(_) => self.retry_soon(delivery).await,
        }
    }

    /// [`settle_answered`](Self::settle_answered) for the error reply to a
    /// message that is never run (invalid or refused): its redelivery only
    /// tries the reply again, so with `dead_letter(_, n)` configured, a
    /// reply that could not be sent on any of `n` deliveries gives up
    /// (logged) rather than retrying for ever.
    pub(super) async fn settle_error_reply(
        &self,
        delivery: &Delivery,
        sent: Result<(), ReplyError>,
    ) {
        match sent {
            Err(error) if self.is_last_attempt(delivery) && !error.is_permanent() => {
                tracing::error!(message_id = %delivery.message_id, receive_count = delivery.receive_count, %error, "the error reply could not be sent on any allowed delivery; message removed");
                self.ack(delivery).await;
            }
            sent => self.settle_answered(delivery, sent).await,
        }
    }

    /// Leaves a message whose answer could not be sent for a passing reason
    /// to be delivered again after a short backoff (see
    /// [`replay::retry_backoff`]) rather than its whole visibility timeout.
    pub(in crate::server) async fn retry_soon(&self, delivery: &Delivery) {
        let backoff =
            replay::retry_backoff(delivery.receive_count, self.inbox.info().visibility_timeout);
        tracing::info!(message_id = %delivery.message_id, ?backoff, "left for redelivery");
        if let Err(error) = self.inbox.extend(&delivery.receipt, backoff).await {
            tracing::warn!(message_id = %delivery.message_id, %error, "could not shorten the visibility; redelivered after the visibility timeout");
        }
    }

    /// Removes a message from the queue.
    pub(super) async fn ack(&self, delivery: &Delivery) {
        if let Err(error) = self.inbox.ack(&delivery.receipt).await {
            tracing::warn!(message_id = %delivery.message_id, %error, "ack failed; the message will be redelivered");
        }
    }

    /// Whether this is the last delivery the server's own dead-lettering
    /// allows (never, without it).
    fn is_last_attempt(&self, delivery: &Delivery) -> bool {
        self.config
            .dead_letter
            .as_ref()
            .is_some_and(|dead_letter| delivery.receive_count >= dead_letter.max_receive_count)
    }
}

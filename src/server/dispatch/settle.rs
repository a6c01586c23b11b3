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

    /// Settles a duplicate answered from the replay cache. Sent, or never
    /// sendable without dead-lettering configured: removed. Failed for a
    /// passing reason: left for redelivery, to be replayed then, up to the
    /// last delivery dead-lettering allows; there the request is
    /// dead-lettered with the reason (as a run whose response failed on its
    /// last delivery), or removed with an error log when it was
    /// dead-lettered already (the kept response is then the notice, or a
    /// response the notice came after). Without that bound a reply address
    /// that stays down would bring the request back until its kept
    /// response expired. Never sendable with dead-lettering: dead-lettered,
    /// unless it was already.
    pub(super) async fn settle_replayed(
        &self,
        request: dead_letter::Request<'_>,
        sent: Result<(), ReplyError>,
        dead_lettered: bool,
    ) {
        let delivery = request.delivery;
        let error = match sent {
            Ok(()) => return self.ack(delivery).await,
            Err(error) => error,
        };
        let can_dead_letter = self.config.dead_letter.is_some() && !dead_lettered;
        let give_up = error.is_permanent() || self.is_last_attempt(delivery);
        if !give_up {
            return self.retry_soon(delivery).await;
        }
        if can_dead_letter {
            let reason = if error.is_permanent() {
                format!(
                    "the final response can never be sent (delivery {}): {error}",
                    delivery.receive_count
                )
            } else {
                format!(
                    "the final response could not be sent on delivery {}: {error}",
                    delivery.receive_count
                )
            };
            self.dead_letter(request, &reason).await;
        } else {
            tracing::error!(message_id = %delivery.message_id, receive_count = delivery.receive_count, %error, dead_lettered, "the kept response could not be sent; message removed");
            self.ack(delivery).await;
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

//! One outbox for every broker that sends in batches, over a small
//! per-service trait.
//!
//! A [`BatchedOutbox`] does what sending to SQS queues and SNS topics has in
//! common:
//!
//! * it refuses, before any call, an address the service does not take
//!   ([`QueueError::UnsupportedDestination`]), a message the service would
//!   refuse as such ([`BatchSend::precheck`]) and a message larger than the
//!   destination accepts ([`QueueError::TooLarge`]);
//! * it looks up each destination's size limit once ([`Destinations`]),
//!   falling back to the service's own limit when the caller may not read
//!   the destination's ([`SizeLookup::Refused`]);
//! * it gives each destination an adaptive [`Batcher`] whose batches carry
//!   at most that many bytes, so that concurrent sends share calls while a
//!   lone send goes out at once.
//!
//! A [`BatchSend`] says only what differs: which addresses are the
//! service's, how to read a destination's limit, what to refuse up front,
//! and how to send one batch (building the entries and reading per-entry
//! failures; [`entry_results`] maps a batch response to its entries).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use super::batch::{Batcher, BatcherConfig, FlushResult};
use super::destinations::Destinations;
use super::{AttributeValue, Outbox, QueueError, QueueMessage};

/// What a destination's size lookup found.
#[derive(Debug)]
pub(crate) enum SizeLookup {
    /// The largest message the destination accepts, in bytes.
    Limit(usize),
    /// The caller may not read the destination's attributes (`error`): the
    /// service's own limit, [`BatchSend::SERVICE_LIMIT`], applies. Kept like
    /// an answer, since asking again would be refused again.
    Refused(QueueError),
}

/// What one batching service (SQS `SendMessageBatch`, SNS `PublishBatch`)
/// adds to a [`BatchedOutbox`].
pub(crate) trait BatchSend: Send + Sync + 'static {
    /// The outbox's name, as its `Debug` shows it.
    const NAME: &'static str;

    /// The largest message the service accepts at all, used when a
    /// destination's own limit may not be read.
    const SERVICE_LIMIT: usize;

    /// Whether `address` names one of this service's destinations.
    fn accepts(&self, address: &str) -> bool;

    /// Reads the size limit of `address` (called once per destination).
    fn max_size(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<SizeLookup, QueueError>> + Send;

    /// Refuses, before any call, a message the service would refuse or
    /// lose; by default none.
    fn precheck(&self, address: &str, message: &QueueMessage) -> Result<(), QueueError> {
        let _ = (address, message);
        Ok(())
    }

    /// Sends one batch (at most [`BatcherConfig::max_entries`] messages, at
    /// most `limit` bytes together) to `address`, whose limit is `limit`:
    /// one result per message, in order, or an error for the call as a whole.
    fn send_batch(
        &self,
        address: &str,
        limit: usize,
        messages: Vec<QueueMessage>,
    ) -> impl Future<Output = FlushResult<()>> + Send;
}

/// An [`Outbox`] that sends through `S` in adaptive batches; see the
/// [module docs](self).
///
/// Cheap to clone: clones share the batchers and the size cache.
pub(crate) struct BatchedOutbox<S> {
    // Not behind one `Arc` with the destinations: each batcher's task holds
    // the service, and the destinations hold the batchers, so a shared
    // `Arc` would keep itself alive.
    service: Arc<S>,
    config: BatcherConfig,
    destinations: Arc<Destinations>,
}

impl<S> Clone for BatchedOutbox<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            config: self.config,
            destinations: self.destinations.clone(),
        }
    }
}

impl<S: BatchSend> fmt::Debug for BatchedOutbox<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(S::NAME)
            .field("config", &self.config)
            .finish()
    }
}

impl<S: BatchSend> BatchedOutbox<S> {
    /// An outbox whose per-destination batchers use `config`, with
    /// [`max_weight`](BatcherConfig::max_weight) set per destination to its
    /// size limit.
    pub(crate) fn new(service: S, config: BatcherConfig) -> Self {
        Self {
            service: Arc::new(service),
            config,
            destinations: Arc::default(),
        }
    }

    fn batcher(&self, address: &str, limit: usize) -> Batcher<QueueMessage, ()> {
        self.destinations.batcher(address, || {
            let config = BatcherConfig {
                max_weight: limit,
                ..self.config
            };
            let service = self.service.clone();
            let address: Arc<str> = address.into();
            Batcher::with_weigher(config, QueueMessage::wire_size, move |messages| {
                let (service, address) = (service.clone(), address.clone());
                async move { service.send_batch(&address, limit, messages).await }
            })
        })
    }

    async fn fetch_max_size(&self, address: &str) -> Result<usize, QueueError> {
        Ok(match self.service.max_size(address).await? {
            SizeLookup::Limit(limit) => limit,
            SizeLookup::Refused(error) => {
                self.destinations
                    .size_refused(address, S::SERVICE_LIMIT, &error)
            }
        })
    }
}

#[async_trait]
impl<S: BatchSend> Outbox for BatchedOutbox<S> {
    fn accepts(&self, address: &str) -> bool {
        self.service.accepts(address)
    }

    async fn send(&self, address: &str, message: QueueMessage) -> Result<(), QueueError> {
        if !self.accepts(address) {
            return Err(QueueError::UnsupportedDestination(address.to_owned()));
        }
        self.service.precheck(address, &message)?;
        let limit = self.max_message_size(address).await?;
        let size = message.wire_size();
        if size > limit {
            return Err(QueueError::TooLarge { size, limit });
        }
        self.batcher(address, limit).submit(message).await
    }

    /// Reads the destination's limit once (concurrent first callers share
    /// one lookup) and caches it; failures are not cached.
    async fn max_message_size(&self, address: &str) -> Result<usize, QueueError> {
        self.destinations
            .max_message_size(address, || self.fetch_max_size(address))
            .await
    }
}

/// An attribute's data type (`String` or `Number`, as SQS and SNS name
/// them) and its text, for a batch entry.
pub(crate) fn typed(value: AttributeValue) -> (&'static str, String) {
    match value {
        AttributeValue::String(text) => ("String", text),
        AttributeValue::Number(text) => ("Number", text),
    }
}

/// Collects a batch response into one result per entry `0..count`, entries
/// being identified by their index as text: `successful` names the entries
/// that went through, `failed` the others, each with what makes its error
/// from its index. An entry the response does not mention fails.
pub(crate) fn entry_results<F>(
    count: usize,
    successful: impl IntoIterator<Item = String>,
    failed: impl IntoIterator<Item = (String, F)>,
) -> Vec<Result<(), QueueError>>
where
    F: FnOnce(usize) -> QueueError,
{
    let mut results: Vec<Option<Result<(), QueueError>>> = vec![None; count];
    let slot = |id: &str| id.parse::<usize>().ok().filter(|&i| i < count);
    for id in successful {
        match slot(&id) {
            Some(i) => results[i] = Some(Ok(())),
            None => tracing::warn!(%id, "batch response names an unknown entry"),
        }
    }
    for (id, error) in failed {
        match slot(&id) {
            Some(i) => results[i] = Some(Err(error(i))),
            None => tracing::warn!(%id, "batch response names an unknown entry"),
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(QueueError::service(
                    "the batch response says nothing of this entry",
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A service that records its batches, accepts `test://` addresses and
    /// refuses bodies saying "refuse" up front.
    #[derive(Default)]
    struct Recording {
        lookups: AtomicUsize,
        refuse_lookup: bool,
        batches: Mutex<Vec<(String, usize, Vec<String>)>>,
    }

    impl BatchSend for Arc<Recording> {
        const NAME: &'static str = "RecordingOutbox";
        const SERVICE_LIMIT: usize = 1000;

        fn accepts(&self, address: &str) -> bool {
            address.starts_with("test://")
        }

        async fn max_size(&self, _: &str) -> Result<SizeLookup, QueueError> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            Ok(if self.refuse_lookup {
                SizeLookup::Refused(QueueError::service("AccessDenied"))
            } else {
                SizeLookup::Limit(20)
            })
        }

        fn precheck(&self, _: &str, message: &QueueMessage) -> Result<(), QueueError> {
            if message.body == "refuse" {
                return Err(QueueError::TooManyAttributes {
                    count: 11,
                    limit: 10,
                });
            }
            Ok(())
        }

        async fn send_batch(
            &self,
            address: &str,
            limit: usize,
            messages: Vec<QueueMessage>,
        ) -> FlushResult<()> {
            let bodies: Vec<String> = messages.iter().map(|m| m.body.clone()).collect();
            let results = bodies
                .iter()
                .map(|body| match body.as_str() {
                    "fail" => Err(QueueError::EntryFailed {
                        code: "X".to_owned(),
                        message: String::new(),
                        sender_fault: false,
                    }),
                    _ => Ok(()),
                })
                .collect();
            self.batches
                .lock()
                .unwrap()
                .push((address.to_owned(), limit, bodies));
            Ok(results)
        }
    }

    #[tokio::test]
    async fn refusals_come_before_any_call_and_sends_reach_the_service() {
        let service = Arc::new(Recording::default());
        let outbox = BatchedOutbox::new(service.clone(), BatcherConfig::default());
        assert!(format!("{outbox:?}").starts_with("RecordingOutbox"));
        let foreign = outbox.send("other://q", QueueMessage::new("x")).await;
        assert!(matches!(
            foreign,
            Err(QueueError::UnsupportedDestination(_))
        ));
        let refused = outbox.send("test://q", QueueMessage::new("refuse")).await;
        assert!(matches!(refused, Err(QueueError::TooManyAttributes { .. })));
        assert_eq!(service.lookups.load(Ordering::Relaxed), 0);
        let large = outbox
            .send("test://q", QueueMessage::new("x".repeat(21)))
            .await;
        assert!(matches!(
            large,
            Err(QueueError::TooLarge {
                size: 21,
                limit: 20
            })
        ));
        outbox
            .send("test://q", QueueMessage::new("ok"))
            .await
            .unwrap();
        let failed = outbox.send("test://q", QueueMessage::new("fail")).await;
        assert!(matches!(failed, Err(QueueError::EntryFailed { .. })));
        assert_eq!(service.lookups.load(Ordering::Relaxed), 1);
        let batches = service.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                ("test://q".to_owned(), 20, vec!["ok".to_owned()]),
                ("test://q".to_owned(), 20, vec!["fail".to_owned()]),
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_lookup_falls_back_to_the_service_limit_once() {
        let service = Arc::new(Recording {
            refuse_lookup: true,
            ..Recording::default()
        });
        let outbox = BatchedOutbox::new(service.clone(), BatcherConfig::default());
        for _ in 0..3 {
            assert_eq!(outbox.max_message_size("test://q").await.unwrap(), 1000);
        }
        outbox
            .send("test://q", QueueMessage::new("x".repeat(500)))
            .await
            .unwrap();
        assert_eq!(service.lookups.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn batch_responses_map_to_their_entries() {
        let failed = [("1", "a"), ("9", "b")].map(|(id, code)| {
            let error = move |i: usize| QueueError::EntryFailed {
                code: format!("{code}{i}"),
                message: String::new(),
                sender_fault: true,
            };
            (id.to_owned(), error)
        });
        let results = entry_results(4, ["2", "0", "junk"].map(str::to_owned), failed);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(
            matches!(&results[1], Err(QueueError::EntryFailed { code, .. }) if code == "a1"),
            "{results:?}"
        );
        assert!(matches!(results[3], Err(QueueError::Service { .. })));
    }
}

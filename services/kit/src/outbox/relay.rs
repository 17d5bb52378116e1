//! The publishing loop shared by every [`OutboxStore`].

use super::{OutboxError, OutboxRecord, OutboxStore, WakeSignal};
use crate::correlation::CORRELATION_ID_HEADER;
use crate::events::{EventNamespace, StreamKind};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Header naming the event type, so tools can filter without parsing JSON.
pub const EVENT_TYPE_HEADER: &str = "Silo-Event-Type";

/// Tuning of a [`Relay`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Records claimed per batch.
    pub batch_size: usize,
    /// How long a claim is valid; a relay that dies leaves its batch to others after this.
    pub lease: Duration,
    /// Fallback poll interval when no wake-up arrives.
    pub poll_interval: Duration,
    /// First back-off after a failure.
    pub backoff_min: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// How long to wait for a JetStream ack.
    pub ack_timeout: Duration,
    /// Published records older than this are deleted.
    pub retention: Duration,
    /// How often retention cleanup runs.
    pub cleanup_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(5),
            retention: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(600),
        }
    }
}

/// Why a relay pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox store failed.
    #[error("outbox store: {0}")]
    Store(#[from] OutboxError),
    /// Sending to the broker failed.
    #[error("publish of event {event_id} failed: {reason}")]
    Publish {
        /// The event that failed.
        event_id: Uuid,
        /// The broker's error.
        reason: String,
    },
    /// No JetStream ack arrived in time.
    #[error("no JetStream ack for event {event_id} within the ack timeout")]
    AckTimeout {
        /// The event that was not acknowledged.
        event_id: Uuid,
    },
    /// A record names a stream this kit does not know.
    #[error("outbox record {event_id} names unknown stream {stream:?}")]
    UnknownStream {
        /// The record.
        event_id: Uuid,
        /// Its stream column.
        stream: String,
    },
}

impl RelayError {
    /// The variant name, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(error) => error.kind(),
            Self::Publish { .. } => "Publish",
            Self::AckTimeout { .. } => "AckTimeout",
            Self::UnknownStream { .. } => "UnknownStream",
        }
    }
}

/// Publishes outbox records of one store to JetStream.
pub struct Relay<S: OutboxStore> {
    store: S,
    jetstream: jetstream::Context,
    namespace: EventNamespace,
    config: RelayConfig,
    metrics: Metrics,
}

impl<S: OutboxStore> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish()
    }
}

/// Outcome of publishing one claimed batch.
struct BatchOutcome {
    published: Vec<Uuid>,
    failed: Vec<Uuid>,
    unattempted: Vec<Uuid>,
    first_error: Option<RelayError>,
}

impl<S: OutboxStore> Relay<S> {
    /// A relay publishing `store`'s records under `namespace`.
    pub fn new(
        store: S,
        jetstream: jetstream::Context,
        namespace: EventNamespace,
        config: RelayConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            jetstream,
            namespace,
            config,
            metrics,
        }
    }

    /// Runs until `shutdown` fires, finishing the batch in hand first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut signal: Option<S::Signal> = None;
        let mut backoff = self.config.backoff_min;
        let mut last_cleanup: Option<Instant> = None;
        loop {
            if shutdown.is_triggered() {
                break;
            }
            if signal.is_none() {
                match self.store.wake_signal().await {
                    Ok(subscribed) => signal = Some(subscribed),
                    Err(error) => {
                        tracing::warn!(error = %error, "outbox wake-up unavailable; polling")
                    }
                }
            }
            match self.drain(&shutdown).await {
                Ok(_) => backoff = self.config.backoff_min,
                Err(error) => {
                    self.metrics.count_outbox_failure(error.kind());
                    tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "outbox relay pass failed; backing off");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    continue;
                }
            }
            if last_cleanup.is_none_or(|at| at.elapsed() >= self.config.cleanup_interval) {
                last_cleanup = Some(Instant::now());
                self.cleanup().await;
            }
            let woken = async {
                match signal.as_mut() {
                    Some(subscribed) => subscribed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                result = woken => {
                    if let Err(error) = result {
                        tracing::warn!(error = %error, "outbox wake-up signal lost; re-subscribing");
                        signal = None;
                    }
                }
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes batches until none is full or `shutdown` fires between batches;
    /// returns how many records were published.
    pub async fn drain(&self, shutdown: &Shutdown) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let claimed = self
                .store
                .claim_batch(self.config.batch_size, self.config.lease)
                .await?;
            let full = claimed.len() >= self.config.batch_size;
            if claimed.is_empty() {
                return Ok(total);
            }
            let outcome = self.publish_batch(claimed).await;
            total += outcome.published.len();
            self.settle(outcome).await?;
            if !full || shutdown.is_triggered() {
                return Ok(total);
            }
        }
    }

    /// Publishes a batch in order, pipelining the acks, and reports per record.
    async fn publish_batch(&self, records: Vec<OutboxRecord>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            published: Vec::with_capacity(records.len()),
            failed: Vec::new(),
            unattempted: Vec::new(),
            first_error: None,
        };
        let mut pending = Vec::with_capacity(records.len());
        let mut records = records.into_iter();
        for record in records.by_ref() {
            match self.send(&record).await {
                Ok(ack) => pending.push((record.event_id, record.created_at, ack)),
                Err(error) => {
                    outcome.failed.push(record.event_id);
                    outcome.first_error = Some(error);
                    break;
                }
            }
        }
        outcome.unattempted = records.map(|record| record.event_id).collect();
        for (event_id, created_at, ack) in pending {
            match tokio::time::timeout(self.config.ack_timeout, ack).await {
                Ok(Ok(_ack)) => {
                    let lag = (Utc::now() - created_at).to_std().unwrap_or_default();
                    self.metrics.outbox_lag.observe(lag.as_secs_f64());
                    outcome.published.push(event_id);
                }
                Ok(Err(error)) => {
                    outcome.failed.push(event_id);
                    outcome.first_error.get_or_insert(RelayError::Publish {
                        event_id,
                        reason: error.to_string(),
                    });
                }
                Err(_elapsed) => {
                    outcome.failed.push(event_id);
                    outcome
                        .first_error
                        .get_or_insert(RelayError::AckTimeout { event_id });
                }
            }
        }
        outcome
    }

    async fn send(
        &self,
        record: &OutboxRecord,
    ) -> Result<jetstream::context::PublishAckFuture, RelayError> {
        let kind =
            StreamKind::from_token(&record.stream).ok_or_else(|| RelayError::UnknownStream {
                event_id: record.event_id,
                stream: record.stream.clone(),
            })?;
        let subject = self.namespace.subject(kind, &record.event_type);
        let message = PublishMessage::build()
            .payload(record.payload.clone().into())
            .message_id(record.event_id.to_string())
            .header(CORRELATION_ID_HEADER, record.correlation_id.as_str())
            .header(EVENT_TYPE_HEADER, record.event_type.as_str());
        self.jetstream
            .send_publish(subject, message)
            .await
            .map_err(|error| RelayError::Publish {
                event_id: record.event_id,
                reason: error.to_string(),
            })
    }

    /// Writes the batch's outcome back; returns the batch's first error, if any.
    async fn settle(&self, outcome: BatchOutcome) -> Result<(), RelayError> {
        if !outcome.published.is_empty() {
            self.store.mark_published(&outcome.published).await?;
            self.metrics
                .outbox_published
                .inc_by(outcome.published.len() as u64);
        }
        if let Some(error) = outcome.first_error {
            if !outcome.failed.is_empty() {
                self.store
                    .mark_failed(&outcome.failed, &error.to_string())
                    .await?;
            }
            if !outcome.unattempted.is_empty() {
                self.store.release(&outcome.unattempted).await?;
            }
            return Err(error);
        }
        Ok(())
    }

    async fn cleanup(&self) {
        let retention =
            chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::days(1));
        match self
            .store
            .delete_published_before(Utc::now() - retention)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::debug!(deleted, "deleted published outbox records past retention")
            }
            Err(error) => tracing::warn!(error = %error, "outbox retention cleanup failed"),
        }
    }
}

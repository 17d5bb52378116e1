//! The publishing loop shared by every [`OutboxStore`].

use super::{OutboxError, OutboxRecord, OutboxStore, WakeSignal};
use crate::correlation::CORRELATION_ID_HEADER;
use crate::events::{EventNamespace, STREAM_MAX_AGE, StreamKind};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, Utc};
use std::future::Future;
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
    /// Never shorter than [`RelayConfig::effective_lease`]: a batch must settle
    /// before another relay may claim it.
    pub lease: Duration,
    /// Fallback poll interval when no wake-up arrives.
    pub poll_interval: Duration,
    /// First back-off after a failure.
    pub backoff_min: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// How long one whole batch may take to send and collect its JetStream
    /// acks (one deadline for the batch, not one per record).
    pub ack_timeout: Duration,
    /// Published records older than this are deleted.
    pub retention: Duration,
    /// Inbox records older than this are deleted: longer than the streams
    /// keep messages, so no redelivery can find its inbox record gone.
    pub inbox_retention: Duration,
    /// Dead letters older than this are deleted.
    pub dead_letter_retention: Duration,
    /// How often retention cleanup runs.
    pub cleanup_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(24 * 3600),
            inbox_retention: STREAM_MAX_AGE + Duration::from_secs(24 * 3600),
            dead_letter_retention: Duration::from_secs(30 * 24 * 3600),
            cleanup_interval: Duration::from_secs(600),
        }
    }
}

/// Time a batch needs after its ack deadline to write its outcome back.
const SETTLE_ALLOWANCE: Duration = Duration::from_secs(20);

impl RelayConfig {
    /// The lease actually taken: `lease`, but at least three times the batch
    /// deadline plus time to write the outcome back, so a slow batch never
    /// loses its claim to another relay while it is still publishing.
    pub fn effective_lease(&self) -> Duration {
        self.lease.max(
            self.ack_timeout
                .saturating_mul(3)
                .saturating_add(SETTLE_ALLOWANCE),
        )
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
    /// The broker has no stream for the record's subject (deleted or never created).
    #[error("no JetStream stream for event {event_id} (stream {stream:?})")]
    StreamNotFound {
        /// The event that was refused.
        event_id: Uuid,
        /// The record's stream.
        stream: StreamKind,
    },
    /// A missing stream could not be created again.
    #[error("cannot re-create JetStream stream {stream}: {reason}")]
    StreamCreate {
        /// The stream's name.
        stream: String,
        /// The broker's error.
        reason: String,
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
            Self::StreamNotFound { .. } => "StreamNotFound",
            Self::StreamCreate { .. } => "StreamCreate",
            Self::UnknownStream { .. } => "UnknownStream",
        }
    }
}

/// Turns a JetStream ack failure into a [`RelayError`].
fn ack_error(
    event_id: Uuid,
    stream: StreamKind,
    error: jetstream::context::PublishError,
) -> RelayError {
    match error.kind() {
        jetstream::context::PublishErrorKind::StreamNotFound => {
            RelayError::StreamNotFound { event_id, stream }
        }
        jetstream::context::PublishErrorKind::TimedOut => RelayError::AckTimeout { event_id },
        _ => RelayError::Publish {
            event_id,
            reason: error.to_string(),
        },
    }
}

/// Waits for `pending` acks in order until `deadline`. After the first
/// failure or the deadline it stops waiting: that record and every later
/// one count as failed (they may have been stored; a retry is de-duplicated).
async fn collect_acks<F>(
    pending: Vec<(Uuid, DateTime<Utc>, F)>,
    deadline: tokio::time::Instant,
    outcome: &mut BatchOutcome,
    on_published: impl Fn(DateTime<Utc>),
) where
    F: Future<Output = Result<(), RelayError>>,
{
    let mut pending = pending.into_iter();
    for (event_id, created_at, ack) in pending.by_ref() {
        let error = match tokio::time::timeout_at(deadline, ack).await {
            Ok(Ok(())) => {
                on_published(created_at);
                outcome.published.push(event_id);
                continue;
            }
            Ok(Err(error)) => error,
            Err(_elapsed) => RelayError::AckTimeout { event_id },
        };
        outcome.failed.push(event_id);
        outcome.first_error.get_or_insert(error);
        break;
    }
    outcome
        .failed
        .extend(pending.map(|(event_id, _, _)| event_id));
}

/// Publishes outbox records of one store to JetStream.
pub struct Relay<S: OutboxStore> {
    store: S,
    jetstream: jetstream::Context,
    namespace: EventNamespace,
    config: RelayConfig,
    metrics: Metrics,
    /// When retention cleanup last ran (checked between batches too, so it
    /// also runs while a sustained load keeps every batch full).
    last_cleanup: std::sync::Mutex<Option<Instant>>,
    /// When the backlog gauges were last updated.
    backlog_reported: std::sync::Mutex<Option<Instant>>,
}

/// The backlog gauges are read at most this often: the query counts every
/// unpublished record, and under load the relay makes hundreds of passes a second.
const BACKLOG_REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl<S: OutboxStore> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish()
    }
}

/// What one relay pass did.
struct Drained {
    /// Records published.
    published: usize,
    /// Whether the pass stopped with records possibly left.
    more: bool,
}

/// The `error` label of `silo_outbox_failures_total` for a wake-up that could not be
/// subscribed to or was lost.
pub const WAKE_UP_FAILURE: &str = "WakeUp";

/// When the relay may subscribe to its store's wake-ups again: each failure (to subscribe, or
/// a signal lost) doubles the wait, from `min` up to `max`; a wake-up received resets it.
#[derive(Debug)]
struct WakeBackoff {
    min: Duration,
    max: Duration,
    delay: Duration,
    not_before: Option<Instant>,
}

impl WakeBackoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            delay: min,
            not_before: None,
        }
    }

    fn may_subscribe(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| now >= at)
    }

    /// Records a failure at `now`; returns how long until the next subscription.
    fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.delay;
        self.not_before = Some(now + wait);
        self.delay = (self.delay * 2).min(self.max);
        wait
    }

    fn succeeded(&mut self) {
        self.delay = self.min;
        self.not_before = None;
    }
}

/// Batches one pass publishes in a row before the relay reads its wake-ups
/// (unread notifications would otherwise pile up in PostgreSQL's queue while a
/// sustained load keeps the pass going).
const MAX_BATCHES_PER_PASS: usize = 64;

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
            last_cleanup: std::sync::Mutex::new(None),
            backlog_reported: std::sync::Mutex::new(None),
        }
    }

    /// Runs until `shutdown` fires, finishing the batch in hand first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut signal: Option<S::Signal> = None;
        let mut backoff = self.config.backoff_min;
        let mut wake = WakeBackoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            if shutdown.is_triggered() {
                break;
            }
            if signal.is_none() && wake.may_subscribe(Instant::now()) {
                match self.store.wake_signal().await {
                    Ok(subscribed) => signal = Some(subscribed),
                    Err(error) => {
                        let retry_in = wake.failed(Instant::now());
                        self.metrics.count_outbox_failure(WAKE_UP_FAILURE);
                        tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "outbox wake-up unavailable; polling")
                    }
                }
            }
            // Before draining, so a broker outage does not stop the cleanup.
            self.cleanup_if_due().await;
            let drained = self.drain_some(&shutdown).await;
            // A report skipped because the last one is too recent shortens the
            // wait below, so the gauges are never older than the interval.
            let mut next_pass = match self.report_backlog_if_due().await {
                Some(due_in) => due_in.min(self.config.poll_interval),
                None => self.config.poll_interval,
            };
            match drained {
                Ok(drained) => {
                    backoff = self.config.backoff_min;
                    if drained.more {
                        // Read the wake-ups already there, then go on at once.
                        next_pass = Duration::ZERO;
                    }
                }
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
            let woken = async {
                match signal.as_mut() {
                    Some(subscribed) => subscribed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                result = woken => match result {
                    Ok(()) => wake.succeeded(),
                    Err(error) => {
                        // A signal that fails at once after every subscription must not turn
                        // into a subscribe loop: the next subscription waits, doubling.
                        let retry_in = wake.failed(Instant::now());
                        self.metrics.count_outbox_failure(WAKE_UP_FAILURE);
                        tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "outbox wake-up signal lost; re-subscribing later, polling meanwhile");
                        signal = None;
                    }
                },
                _ = tokio::time::sleep(next_pass) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes batches until none is left or `shutdown` fires between
    /// batches; returns how many records were published.
    pub async fn drain(&self, shutdown: &Shutdown) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let drained = self.drain_some(shutdown).await?;
            total += drained.published;
            if !drained.more || shutdown.is_triggered() {
                return Ok(total);
            }
        }
    }

    /// Publishes up to [`MAX_BATCHES_PER_PASS`] batches, going on while
    /// records keep coming, or until `shutdown` fires between batches.
    async fn drain_some(&self, shutdown: &Shutdown) -> Result<Drained, RelayError> {
        let mut total = 0;
        let mut stream_recreated = false;
        let (limit, lease) = (self.config.batch_size, self.config.effective_lease());
        let mut claimed = self.store.claim_batch(limit, lease).await?;
        let mut batches = 0;
        while !claimed.is_empty() {
            batches += 1;
            let started = Instant::now();
            let records = claimed.len();
            let outcome = self.publish_batch(claimed).await;
            let acked_at = Instant::now();
            total += outcome.published.len();
            let last = shutdown.is_triggered() || batches >= MAX_BATCHES_PER_PASS;
            if outcome.first_error.is_none() && !last {
                // The usual step: the statement that marks this batch published
                // also claims what was written meanwhile.
                let published = outcome.published.len() as u64;
                claimed = self
                    .store
                    .mark_published_and_claim(&outcome.published, limit, lease)
                    .await?;
                self.metrics.outbox_published.inc_by(published);
            } else {
                match self.settle(outcome).await {
                    // Shutting down, or time to read the wake-ups: more may be waiting.
                    Ok(()) => {
                        return Ok(Drained {
                            published: total,
                            more: true,
                        });
                    }
                    Err(RelayError::StreamNotFound { stream, .. }) if !stream_recreated => {
                        // Someone deleted the stream: create it again and retry at once.
                        self.recreate_stream(stream).await?;
                        stream_recreated = true;
                        claimed = self.store.claim_batch(limit, lease).await?;
                    }
                    Err(error) => return Err(error),
                }
            }
            tracing::debug!(
                records,
                publish_us = (acked_at - started).as_micros() as u64,
                settle_us = acked_at.elapsed().as_micros() as u64,
                "outbox batch"
            );
            // Between batches too, so a sustained load does not hold them up.
            self.cleanup_if_due().await;
            self.report_backlog_if_due().await;
        }
        Ok(Drained {
            published: total,
            more: false,
        })
    }

    async fn recreate_stream(&self, kind: StreamKind) -> Result<(), RelayError> {
        let stream = self.namespace.stream_name(kind);
        tracing::warn!(stream = %stream, "JetStream stream missing; creating it again");
        self.namespace
            .ensure_stream(&self.jetstream, kind)
            .await
            .map_err(|error| RelayError::StreamCreate {
                stream,
                reason: error.to_string(),
            })?;
        Ok(())
    }

    /// Publishes a batch in order, pipelining the acks, and reports per record.
    ///
    /// The whole batch shares one deadline: with the broker down a batch
    /// costs at most `ack_timeout`, well inside its lease, and shutdown is
    /// never held up for longer.
    async fn publish_batch(&self, records: Vec<OutboxRecord>) -> BatchOutcome {
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout;
        let mut outcome = BatchOutcome {
            published: Vec::with_capacity(records.len()),
            failed: Vec::new(),
            unattempted: Vec::new(),
            first_error: None,
        };
        let mut pending = Vec::with_capacity(records.len());
        let mut records = records.into_iter();
        for record in records.by_ref() {
            let sent = match tokio::time::timeout_at(deadline, self.send(&record)).await {
                Ok(sent) => sent,
                Err(_elapsed) => Err(RelayError::AckTimeout {
                    event_id: record.event_id,
                }),
            };
            match sent {
                Ok((stream, ack)) => {
                    let event_id = record.event_id;
                    let ack = async move {
                        ack.await
                            .map(|_ack| ())
                            .map_err(|error| ack_error(event_id, stream, error))
                    };
                    pending.push((event_id, record.created_at, ack));
                }
                Err(error) => {
                    outcome.failed.push(record.event_id);
                    outcome.first_error = Some(error);
                    break;
                }
            }
        }
        outcome.unattempted = records.map(|record| record.event_id).collect();
        collect_acks(pending, deadline, &mut outcome, |created_at| {
            let lag = (Utc::now() - created_at).to_std().unwrap_or_default();
            self.metrics.outbox_lag.observe(lag.as_secs_f64());
        })
        .await;
        outcome
    }

    async fn send(
        &self,
        record: &OutboxRecord,
    ) -> Result<(StreamKind, jetstream::context::PublishAckFuture), RelayError> {
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
        let ack = self
            .jetstream
            .send_publish(subject, message)
            .await
            .map_err(|error| RelayError::Publish {
                event_id: record.event_id,
                reason: error.to_string(),
            })?;
        Ok((kind, ack))
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

    /// Updates the backlog gauges unless they were updated less than
    /// [`BACKLOG_REPORT_INTERVAL`] ago; then returns how long until they are due.
    async fn report_backlog_if_due(&self) -> Option<Duration> {
        let due_in = match self.backlog_reported.lock() {
            Ok(last) => last.map_or(Duration::ZERO, |at| {
                BACKLOG_REPORT_INTERVAL.saturating_sub(at.elapsed())
            }),
            Err(_poisoned) => return Some(BACKLOG_REPORT_INTERVAL),
        };
        if !due_in.is_zero() {
            return Some(due_in);
        }
        self.report_backlog().await;
        if let Ok(mut last) = self.backlog_reported.lock() {
            *last = Some(Instant::now());
        }
        None
    }

    /// Updates the backlog gauges from the store.
    async fn report_backlog(&self) {
        match self.store.backlog().await {
            Ok(Some(backlog)) => {
                self.metrics
                    .outbox_backlog
                    .set(i64::try_from(backlog.records).unwrap_or(i64::MAX));
                let age = backlog.oldest.map_or(0.0, |oldest| {
                    (Utc::now() - oldest)
                        .to_std()
                        .unwrap_or_default()
                        .as_secs_f64()
                });
                self.metrics.outbox_oldest_unpublished_age.set(age);
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(error = %error, "cannot read the outbox backlog"),
        }
    }

    /// Runs retention cleanup when `cleanup_interval` has passed since the last run.
    async fn cleanup_if_due(&self) {
        let due = match self.last_cleanup.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|at| at.elapsed() >= self.config.cleanup_interval);
                if due {
                    *last = Some(Instant::now());
                }
                due
            }
            Err(_poisoned) => false,
        };
        if due {
            self.cleanup().await;
        }
    }

    async fn cleanup(&self) {
        let now = Utc::now();
        let before = |retention: Duration| {
            chrono::Duration::from_std(retention)
                .ok()
                .and_then(|retention| now.checked_sub_signed(retention))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        let outcomes = [
            (
                "outbox",
                self.store
                    .delete_published_before(before(self.config.retention))
                    .await,
            ),
            (
                "inbox",
                self.store
                    .delete_inbox_before(before(self.config.inbox_retention))
                    .await,
            ),
            (
                "dead_letters",
                self.store
                    .delete_dead_letters_before(before(self.config.dead_letter_retention))
                    .await,
            ),
        ];
        for (table, outcome) in outcomes {
            match outcome {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(table, deleted, "deleted records past retention"),
                Err(error) => tracing::warn!(table, error = %error, "retention cleanup failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn wake_up_failures_back_off_doubling_to_the_cap_and_a_wake_up_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(350));
        let mut wake = WakeBackoff::new(min, max);
        let start = Instant::now();
        assert!(wake.may_subscribe(start));
        let waits: Vec<Duration> = (0..4).map(|_| wake.failed(start)).collect();
        assert_eq!(
            waits,
            [100, 200, 350, 350].map(Duration::from_millis).to_vec()
        );
        // The last failure's wait is in force: no subscription before it ends.
        assert!(!wake.may_subscribe(start + Duration::from_millis(349)));
        assert!(wake.may_subscribe(start + Duration::from_millis(350)));
        wake.succeeded();
        assert!(wake.may_subscribe(start));
        assert_eq!(wake.failed(start), min);
    }

    fn empty_outcome() -> BatchOutcome {
        BatchOutcome {
            published: Vec::new(),
            failed: Vec::new(),
            unattempted: Vec::new(),
            first_error: None,
        }
    }

    type AckFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), RelayError>>>>;

    fn acked() -> AckFuture {
        Box::pin(async { Ok(()) })
    }

    fn never_acked() -> AckFuture {
        Box::pin(std::future::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_broker_costs_one_deadline_per_batch_not_one_per_record() {
        let ids: Vec<Uuid> = (0..256).map(|_| Uuid::new_v4()).collect();
        let mut pending = vec![(ids[0], Utc::now(), acked())];
        pending.extend(ids[1..].iter().map(|id| (*id, Utc::now(), never_acked())));
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(5);
        let mut outcome = empty_outcome();
        let published = Cell::new(0);
        collect_acks(pending, deadline, &mut outcome, |_| {
            published.set(published.get() + 1)
        })
        .await;
        // Virtual time: the wait ends at the batch deadline, not 255 × 5 s later.
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(outcome.published, vec![ids[0]]);
        assert_eq!(outcome.failed, ids[1..].to_vec());
        assert_eq!(published.get(), 1);
        assert!(matches!(
            outcome.first_error,
            Some(RelayError::AckTimeout { event_id }) if event_id == ids[1]
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_refused_ack_ends_the_wait_and_fails_the_rest() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let first = ids[0];
        let refused: AckFuture = Box::pin(async move {
            Err(RelayError::StreamNotFound {
                event_id: first,
                stream: StreamKind::Users,
            })
        });
        let pending = vec![
            (ids[0], Utc::now(), refused),
            (ids[1], Utc::now(), never_acked()),
            (ids[2], Utc::now(), acked()),
        ];
        let started = tokio::time::Instant::now();
        let mut outcome = empty_outcome();
        collect_acks(
            pending,
            started + Duration::from_secs(5),
            &mut outcome,
            |_| {},
        )
        .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(outcome.published.is_empty());
        assert_eq!(outcome.failed, ids);
        assert_eq!(
            outcome.first_error.as_ref().map(RelayError::kind),
            Some("StreamNotFound")
        );
    }

    #[test]
    fn the_lease_outlasts_the_slowest_batch() {
        let config = RelayConfig::default();
        assert!(config.effective_lease() > config.ack_timeout * 2);
        let short = RelayConfig {
            lease: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(30),
            ..RelayConfig::default()
        };
        assert!(short.effective_lease() >= Duration::from_secs(90));
    }
}

//! The transactional outbox: events are written in the business transaction
//! and published afterwards by a [`Relay`].
//!
//! The relay is written against [`OutboxStore`], so the PostgreSQL store
//! ([`postgres`]) and the MongoDB store ([`mongo`]) share one publishing loop:
//!
//! 1. claim a batch of unpublished records, oldest first (a lease that
//!    outlasts the batch deadline, taken in its own short transaction, so
//!    replicas never publish the same batch concurrently),
//! 2. publish each with `Nats-Msg-Id = eventId` and collect the JetStream
//!    acks against one deadline for the whole batch, stopping at the first
//!    failure — no database transaction is open meanwhile,
//! 3. mark the acknowledged records published, claiming the next batch in the
//!    same round trip where the store can, and go on while records keep
//!    coming; after a failure record attempts and the last error of the
//!    others, release the rest of the batch, back off exponentially
//!    (re-creating the stream first if the broker has none).
//!
//! The relay wakes on the store's [`WakeSignal`] (LISTEN/NOTIFY for
//! PostgreSQL) and polls slowly as a fallback; published records, inbox
//! records and dead letters older than their retention periods are deleted
//! periodically. On shutdown it finishes the batch in hand and stops.

pub mod mongo;
pub mod postgres;
mod relay;

pub use relay::{Relay, RelayConfig, RelayError};

/// What is still waiting to be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Unpublished records.
    pub records: u64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
}

use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// One event waiting to be published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    /// The envelope's id, used as `Nats-Msg-Id`.
    pub event_id: Uuid,
    /// The producing stream's token (`bookings`).
    pub stream: String,
    /// The event type (last subject token).
    pub event_type: String,
    /// The serialized envelope.
    pub payload: Vec<u8>,
    /// Correlation id, copied into the message headers.
    pub correlation_id: String,
    /// When the record was written.
    pub created_at: DateTime<Utc>,
    /// Failed publish attempts so far.
    pub attempts: i32,
}

/// A store-side failure of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    /// MongoDB failed.
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A record could not be (de)serialized.
    #[error("encoding: {0}")]
    Encoding(#[from] crate::events::EventError),
    /// A stored record is unusable.
    #[error("corrupt outbox record: {0}")]
    Corrupt(String),
}

impl OutboxError {
    /// The variant name, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "Postgres",
            Self::Mongo(_) => "Mongo",
            Self::Encoding(_) => "Encoding",
            Self::Corrupt(_) => "Corrupt",
        }
    }
}

/// Wakes the relay when new records may be waiting.
pub trait WakeSignal: Send {
    /// Returns when woken; an error means the signal is broken and the relay
    /// falls back to polling until it re-subscribes.
    fn notified(&mut self) -> impl Future<Output = Result<(), OutboxError>> + Send;
}

/// A signal that never fires: the relay only polls.
#[derive(Debug, Default)]
pub struct PollOnly;

impl WakeSignal for PollOnly {
    async fn notified(&mut self) -> Result<(), OutboxError> {
        std::future::pending().await
    }
}

/// Where outbox records live; implemented for PostgreSQL and MongoDB.
pub trait OutboxStore: Send + Sync + 'static {
    /// The wake-up signal of this store.
    type Signal: WakeSignal;

    /// Subscribes to wake-ups (called before each drain pass that has none).
    fn wake_signal(&self) -> impl Future<Output = Result<Self::Signal, OutboxError>> + Send;

    /// Claims up to `limit` unpublished, unclaimed records, oldest first,
    /// leasing them for `lease`; returns them in insertion order.
    fn claim_batch(
        &self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, OutboxError>> + Send;

    /// Marks records published (and releases their lease).
    fn mark_published(
        &self,
        event_ids: &[Uuid],
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Marks `published` published and claims the next batch like
    /// [`Self::claim_batch`]: the relay's step between two batches, done as one
    /// round trip where the store can (PostgreSQL: one statement). The default
    /// runs [`Self::mark_published`], then [`Self::claim_batch`].
    fn mark_published_and_claim(
        &self,
        published: &[Uuid],
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, OutboxError>> + Send {
        async move {
            self.mark_published(published).await?;
            self.claim_batch(limit, lease).await
        }
    }

    /// Records a failed attempt with its error, releasing the lease.
    fn mark_failed(
        &self,
        event_ids: &[Uuid],
        error: &str,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Releases the lease of records that were claimed but not attempted.
    fn release(&self, event_ids: &[Uuid]) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Deletes records published before `cutoff`; returns how many.
    fn delete_published_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, OutboxError>> + Send;

    /// The unpublished records' count and age; `None` when the store cannot
    /// tell (the default).
    fn backlog(&self) -> impl Future<Output = Result<Option<Backlog>, OutboxError>> + Send {
        std::future::ready(Ok(None))
    }

    /// Deletes inbox records of events processed before `cutoff` (the same
    /// database holds the inbox); returns how many. The default keeps them.
    fn delete_inbox_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, OutboxError>> + Send {
        let _ = cutoff;
        std::future::ready(Ok(0))
    }

    /// Deletes dead letters recorded before `cutoff`; returns how many. The
    /// default keeps them.
    fn delete_dead_letters_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, OutboxError>> + Send {
        let _ = cutoff;
        std::future::ready(Ok(0))
    }
}

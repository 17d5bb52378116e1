//! The PostgreSQL inbox (`inbox` table) and dead-letter table (`dead_letters`).

use crate::consumer::{
    DeadLetter, DeadLetterSink, HandlerError, MessageHandler, Processed, StreamPosition,
};
use crate::events::Envelope;
use sqlx::{PgConnection, PgPool};
use std::future::Future;

/// An event effect written on the consumer's transaction.
pub trait PgEventHandler: Send + Sync + 'static {
    /// Whether this handler acts on `event_type` (others are acked as ignored
    /// without touching the database).
    fn handles(&self, event_type: &str) -> bool;

    /// Applies the effect on `tx`; the inbox record is already written on it,
    /// and both commit together. Outgoing events go to the outbox on `tx` too.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// Wraps a [`PgEventHandler`] with inbox de-duplication for one consumer.
#[derive(Debug, Clone)]
pub struct PgInbox<H> {
    pool: PgPool,
    consumer: String,
    handler: H,
}

impl<H> PgInbox<H> {
    /// The inbox of `consumer` (the durable consumer name) in `pool`'s database.
    pub fn new(pool: PgPool, consumer: impl Into<String>, handler: H) -> Self {
        Self {
            pool,
            consumer: consumer.into(),
            handler,
        }
    }
}

impl<H: PgEventHandler> MessageHandler for PgInbox<H> {
    async fn handle(&self, envelope: &Envelope) -> Result<Processed, HandlerError> {
        if !self.handler.handles(&envelope.event_type) {
            return Ok(Processed::Ignored);
        }
        let mut tx = self.pool.begin().await?;
        // A concurrent delivery of the same event blocks here until the first
        // commits (then conflicts) or rolls back (then proceeds).
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(envelope.event_id)
        .bind(&envelope.event_type)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Processed::Duplicate);
        }
        self.handler.apply(&mut tx, envelope).await?;
        tx.commit().await?;
        Ok(Processed::Applied)
    }
}

/// Records dead letters in the `dead_letters` table.
#[derive(Debug, Clone)]
pub struct PgDeadLetters {
    pool: PgPool,
}

impl PgDeadLetters {
    /// Dead letters in `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl DeadLetterSink for PgDeadLetters {
    async fn record(&self, letter: &DeadLetter) -> Result<(), anyhow::Error> {
        self.record_at(letter, None).await
    }

    /// Inserts the letter once: a second recording of the same event (or,
    /// without an event id, of the same stream position) is a no-op.
    async fn record_at(
        &self,
        letter: &DeadLetter,
        position: Option<&StreamPosition>,
    ) -> Result<(), anyhow::Error> {
        let sequence = position.and_then(|p| i64::try_from(p.sequence).ok());
        sqlx::query(
            "INSERT INTO dead_letters \
             (consumer, event_id, subject, payload, error, deliveries, stream, stream_sequence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&letter.consumer)
        .bind(letter.event_id)
        .bind(&letter.subject)
        .bind(&letter.payload)
        .bind(&letter.error)
        .bind(letter.deliveries)
        .bind(position.map(|p| p.stream.as_str()))
        .bind(sequence)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

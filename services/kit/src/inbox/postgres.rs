//! The PostgreSQL inbox (`inbox` table) and dead-letter table (`dead_letters`).

use crate::consumer::{
    DeadLetter, DeadLetterSink, HandlerError, MessageHandler, Processed, StreamPosition,
};
use crate::events::Envelope;
use sqlx::{PgConnection, PgPool};
use std::collections::HashSet;
use std::future::Future;
use uuid::Uuid;

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

    /// Applies the effects of a run of new events on `tx`, in order; their
    /// inbox records are already written on it. Handlers that can write a
    /// run with multi-row statements override this; the default applies
    /// them one by one.
    fn apply_run<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelopes: &'a [&'a Envelope],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
        async move {
            for envelope in envelopes {
                self.apply(tx, envelope).await?;
            }
            Ok(())
        }
    }
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

    const BATCHES: bool = true;

    /// One transaction for the run: one statement writes the inbox records
    /// of every event the handler acts on (in key order, so two runs that
    /// share an event wait for each other instead of deadlocking) and returns
    /// the new ones; then each new event's effect is applied in order, and
    /// all of it commits once. A failure rolls the whole run back (the
    /// consumer then handles its events one by one).
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Vec<Processed>, HandlerError> {
        let wanted: Vec<&Envelope> = envelopes
            .iter()
            .filter(|envelope| self.handler.handles(&envelope.event_type))
            .collect();
        if wanted.is_empty() {
            return Ok(vec![Processed::Ignored; envelopes.len()]);
        }
        let ids: Vec<Uuid> = wanted.iter().map(|envelope| envelope.event_id).collect();
        let types: Vec<&str> = wanted.iter().map(|e| e.event_type.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        let mut fresh: HashSet<Uuid> = sqlx::query_scalar(
            "INSERT INTO inbox (consumer, event_id, event_type) \
             SELECT $1, event_id, event_type FROM unnest($2::uuid[], $3::text[]) AS run(event_id, event_type) \
             ORDER BY event_id \
             ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
        )
        .bind(&self.consumer)
        .bind(&ids)
        .bind(&types)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut outcomes = Vec::with_capacity(envelopes.len());
        let mut new_events = Vec::with_capacity(fresh.len());
        for envelope in envelopes {
            if !self.handler.handles(&envelope.event_type) {
                outcomes.push(Processed::Ignored);
            } else if fresh.remove(&envelope.event_id) {
                // Removed, so a second copy of the event in the same run is a duplicate.
                new_events.push(envelope);
                outcomes.push(Processed::Applied);
            } else {
                outcomes.push(Processed::Duplicate);
            }
        }
        self.handler.apply_run(&mut tx, &new_events).await?;
        tx.commit().await?;
        Ok(outcomes)
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

//! The PostgreSQL outbox: the `outbox` table (kit migration), [`enqueue`]
//! inside the business transaction, and [`PgOutbox`] for the relay.

use super::{Backlog, OutboxError, OutboxRecord, OutboxStore, WakeSignal};
use crate::correlation::CorrelationId;
use crate::events::{Envelope, Event};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// The channel the `outbox` insert trigger notifies.
pub const NOTIFY_CHANNEL: &str = "silo_outbox";

/// Writes `event` to the outbox on `conn` — pass the business transaction
/// (`&mut *tx`) so both commit or neither does. Returns the envelope written.
pub async fn enqueue<E: Event>(
    conn: &mut PgConnection,
    event: &E,
    correlation_id: &CorrelationId,
) -> Result<Envelope, OutboxError> {
    let envelope = Envelope::new(event, correlation_id.as_str())?;
    enqueue_envelope(conn, E::STREAM.token(), &envelope).await?;
    Ok(envelope)
}

/// Writes a ready envelope to the outbox on `conn` for the stream `stream_token`.
pub async fn enqueue_envelope(
    conn: &mut PgConnection,
    stream_token: &str,
    envelope: &Envelope,
) -> Result<(), OutboxError> {
    let payload = serde_json::to_value(envelope).map_err(crate::events::EventError::from)?;
    sqlx::query(
        "INSERT INTO outbox (event_id, stream, event_type, payload, correlation_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(envelope.event_id)
    .bind(stream_token)
    .bind(&envelope.event_type)
    .bind(payload)
    .bind(&envelope.correlation_id)
    .bind(envelope.occurred_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes ready envelopes to the outbox on `conn` with one statement, each
/// with its stream token, in the given order — the multi-row form of
/// [`enqueue_envelope`] for handlers that apply a run of events at once.
pub async fn enqueue_all(
    conn: &mut PgConnection,
    records: &[(&str, &Envelope)],
) -> Result<(), OutboxError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut columns = OutboxColumns::default();
    for (stream_token, envelope) in records {
        columns.event_ids.push(envelope.event_id);
        columns.streams.push(stream_token.to_string());
        columns.event_types.push(envelope.event_type.clone());
        columns
            .payloads
            .push(serde_json::to_value(envelope).map_err(crate::events::EventError::from)?);
        columns
            .correlation_ids
            .push(envelope.correlation_id.clone());
        columns.created_at.push(envelope.occurred_at);
    }
    // WITH ORDINALITY keeps the given order in the `seq` the relay publishes by.
    sqlx::query(
        "INSERT INTO outbox (event_id, stream, event_type, payload, correlation_id, created_at) \
         SELECT event_id, stream, event_type, payload, correlation_id, created_at \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[]) \
             WITH ORDINALITY AS run(event_id, stream, event_type, payload, correlation_id, created_at, position) \
         ORDER BY position",
    )
    .bind(&columns.event_ids)
    .bind(&columns.streams)
    .bind(&columns.event_types)
    .bind(&columns.payloads)
    .bind(&columns.correlation_ids)
    .bind(&columns.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The outbox columns of a run of records, as arrays.
#[derive(Default)]
struct OutboxColumns {
    event_ids: Vec<Uuid>,
    streams: Vec<String>,
    event_types: Vec<String>,
    payloads: Vec<serde_json::Value>,
    correlation_ids: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
}

/// Connections the relay's own pool keeps.
const RELAY_CONNECTIONS: u32 = 2;

/// The outbox of one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgOutbox {
    pool: PgPool,
}

impl PgOutbox {
    /// The outbox in `pool`'s database (its tables come from [`crate::postgres::migrate`]).
    ///
    /// The relay uses a small pool of its own on the same database with
    /// `synchronous_commit = off`: losing a claim or a "published" mark in a
    /// crash only leads to a re-publication that JetStream and the inboxes
    /// drop, so the relay need not wait for WAL flushes on every batch.
    ///
    /// Its statements are planned for every execution
    /// (`plan_cache_mode = force_custom_plan`): the outbox starts empty and
    /// grows, and a plan cached while it was small (a sequential scan for
    /// `event_id = ANY($1)`, chosen for a table of a few rows) stays with the
    /// connection and makes every later "published" mark read the whole table.
    pub fn new(pool: PgPool) -> Self {
        let options = (*pool.connect_options()).clone().options([
            ("synchronous_commit", "off"),
            ("plan_cache_mode", "force_custom_plan"),
        ]);
        let relay_pool =
            crate::postgres::pool_options(RELAY_CONNECTIONS).connect_lazy_with(options);
        Self { pool: relay_pool }
    }
}

/// LISTEN on [`NOTIFY_CHANNEL`].
#[derive(Debug)]
pub struct PgWakeSignal {
    listener: PgListener,
}

impl WakeSignal for PgWakeSignal {
    async fn notified(&mut self) -> Result<(), OutboxError> {
        self.listener.recv().await?;
        // Collapse a burst of notifications into one wake-up.
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}

type ClaimedRow = (
    Uuid,
    String,
    String,
    serde_json::Value,
    String,
    DateTime<Utc>,
    i32,
    i64,
);

/// Claims unpublished, unleased records, oldest first (`$1` = limit, `$2` =
/// lease in seconds).
///
/// The rows are found through the partial index of unpublished records and
/// then updated by their `ctid` (a TID scan): the locked rows cannot move
/// before the update. Matching them by `seq IN (…)` instead let the planner
/// join against a sequential scan of the whole table, published history
/// included, so every claim cost grew with the retention period.
const CLAIM: &str = "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2) \
     WHERE ctid = ANY(ARRAY( \
         SELECT ctid FROM outbox \
         WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now()) \
         ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)) \
     RETURNING event_id, stream, event_type, payload, correlation_id, created_at, attempts, seq";

/// Marks `$3` (event ids) published and claims the next batch in one
/// statement (`$1`, `$2` as in [`CLAIM`]).
fn mark_published_and_claim_sql() -> String {
    format!(
        "WITH published AS ( \
             UPDATE outbox SET published_at = now(), claimed_until = NULL \
             WHERE event_id = ANY($3)) \
         {CLAIM}"
    )
}

/// Claimed rows as records, in insertion order.
fn records_of(mut rows: Vec<ClaimedRow>) -> Result<Vec<OutboxRecord>, OutboxError> {
    rows.sort_by_key(|row| row.7);
    rows.into_iter()
        .map(
            |(event_id, stream, event_type, payload, correlation_id, created_at, attempts, _)| {
                let payload = serde_json::to_vec(&payload)
                    .map_err(|e| OutboxError::Corrupt(format!("{event_id}: {e}")))?;
                Ok(OutboxRecord {
                    event_id,
                    stream,
                    event_type,
                    payload,
                    correlation_id,
                    created_at,
                    attempts,
                })
            },
        )
        .collect()
}

impl OutboxStore for PgOutbox {
    type Signal = PgWakeSignal;

    async fn wake_signal(&self) -> Result<Self::Signal, OutboxError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(PgWakeSignal { listener })
    }

    async fn claim_batch(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        // One statement = one short transaction; SKIP LOCKED lets replicas
        // claim disjoint batches without waiting on each other.
        let rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        records_of(rows)
    }

    /// One statement: the data-modifying `WITH` marks the batch just
    /// published while the claim runs on the same snapshot, in which that
    /// batch is still leased and so is never claimed again.
    async fn mark_published_and_claim(
        &self,
        published: &[Uuid],
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        let sql = mark_published_and_claim_sql();
        let rows: Vec<ClaimedRow> = sqlx::query_as(&sql)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(lease.as_secs_f64())
            .bind(published)
            .fetch_all(&self.pool)
            .await?;
        records_of(rows)
    }

    async fn mark_published(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE outbox SET published_at = now(), claimed_until = NULL WHERE event_id = ANY($1)",
        )
        .bind(event_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_failed(&self, event_ids: &[Uuid], error: &str) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, claimed_until = NULL \
             WHERE event_id = ANY($1)",
        )
        .bind(event_ids)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        sqlx::query("UPDATE outbox SET claimed_until = NULL WHERE event_id = ANY($1)")
            .bind(event_ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_published_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let deleted = sqlx::query("DELETE FROM outbox WHERE published_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn backlog(&self) -> Result<Option<Backlog>, OutboxError> {
        let (records, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(Backlog {
            records: u64::try_from(records).unwrap_or(0),
            oldest,
        }))
    }

    async fn delete_inbox_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let deleted = sqlx::query("DELETE FROM inbox WHERE processed_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn delete_dead_letters_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let deleted = sqlx::query("DELETE FROM dead_letters WHERE dead_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan PostgreSQL picks for `sql` with these arguments, as text.
    async fn plan(pool: &PgPool, sql: &str, published: &[Uuid]) -> String {
        let explain = format!("EXPLAIN {sql}");
        let mut query = sqlx::query_scalar::<_, String>(&explain)
            .bind(256_i64)
            .bind(30.0_f64);
        if !published.is_empty() {
            query = query.bind(published);
        }
        query
            .fetch_all(pool)
            .await
            .expect("EXPLAIN runs")
            .join("\n")
    }

    /// With a long published history kept for retention, claiming still reads
    /// only the unpublished records: no plan of the claim scans the table.
    #[tokio::test]
    async fn claims_never_scan_the_published_history() {
        let database = silo_testenv::TestDatabase::create().await;
        let pool = database.pool().await;
        crate::postgres::kit_migrator()
            .run(&pool)
            .await
            .expect("kit migrations apply");
        sqlx::raw_sql(
            "INSERT INTO outbox (event_id, stream, event_type, payload, correlation_id) \
             SELECT gen_random_uuid(), 'users', 'UserRegistered', '{}', 'c' FROM generate_series(1, 8000); \
             UPDATE outbox SET published_at = now() WHERE seq <= 7950",
        )
        .execute(&pool)
        .await
        .expect("history written");
        // As autovacuum leaves it.
        sqlx::raw_sql("VACUUM ANALYZE outbox")
            .execute(&pool)
            .await
            .expect("vacuumed");
        let published: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM outbox WHERE seq > 7900 AND seq <= 7950")
                .fetch_all(&pool)
                .await
                .expect("ids read");
        let claim = plan(&pool, CLAIM, &[]).await;
        let mark_and_claim = plan(&pool, &mark_published_and_claim_sql(), &published).await;
        for (what, plan) in [("claim", claim), ("mark and claim", mark_and_claim)] {
            assert!(
                !plan.contains("Seq Scan on outbox"),
                "the {what} reads the whole outbox:\n{plan}"
            );
        }
    }
}

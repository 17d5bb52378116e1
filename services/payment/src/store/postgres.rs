//! The PostgreSQL payment store (used where no MongoDB is available).

use super::{CompleteCharge, DeadLetter, Effect, InboxMark, OutboxEntry, PaymentStore, StoreError};
use crate::payment::{
    BookingState, ChargeResult, NewPayment, Payment, PaymentMethod, PaymentStatus, now_millis,
};
use chrono::{DateTime, SubsecRound, Utc};
use silo_kit::consumer::DeadLetterSink;
use silo_kit::inbox::postgres::PgDeadLetters;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Payments in PostgreSQL; the outbox and inbox are tables of the same database.
#[derive(Debug, Clone)]
pub struct PgPaymentStore {
    pool: PgPool,
}

const PAYMENT_COLUMNS: &str = "id, booking_id, user_id, user_email, user_email_as_of, amount, currency, status, \
     payment_method, transaction_id, failure_reason, attempts, booking_status, created_at, \
     updated_at, metadata";

impl PgPaymentStore {
    /// Runs the embedded migrations and returns the store.
    pub async fn connect(pool: PgPool) -> Result<Self, StoreError> {
        silo_kit::postgres::migrate(&pool, Self::migrations()).await?;
        Ok(Self::new(pool))
    }

    /// The store over a database the [`Self::migrations`] have been run on.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The store's embedded migrations (the kit's tables come with `silo_kit::postgres::migrate`).
    pub fn migrations() -> sqlx::migrate::Migrator {
        sqlx::migrate!("./migrations")
    }

    /// The pool, for the outbox relay and readiness checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn fetch_one_by(
        &self,
        column: &'static str,
        value: Uuid,
    ) -> Result<Option<Payment>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE {column} = $1");
        sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| payment_from_row(&row))
            .transpose()
    }
}

/// Inserts the inbox mark; `false` when this consumer handled the event before.
async fn insert_inbox(
    tx: &mut Transaction<'_, Postgres>,
    inbox: &InboxMark,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&inbox.consumer)
    .bind(inbox.event_id)
    .bind(&inbox.event_type)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Appends an event to the outbox of this transaction.
async fn insert_outbox(
    tx: &mut Transaction<'_, Postgres>,
    event: &OutboxEntry,
) -> Result<(), StoreError> {
    silo_kit::outbox::postgres::enqueue_envelope(tx, &event.stream, &event.envelope).await?;
    Ok(())
}

fn payment_from_row(row: &PgRow) -> Result<Payment, StoreError> {
    let status: String = row.try_get("status")?;
    let booking_status: String = row.try_get("booking_status")?;
    let method: Option<serde_json::Value> = row.try_get("payment_method")?;
    Ok(Payment {
        id: row.try_get("id")?,
        booking_id: row.try_get("booking_id")?,
        user_id: row.try_get("user_id")?,
        user_email: row.try_get("user_email")?,
        user_email_as_of: row.try_get("user_email_as_of")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        payment_method: method
            .map(serde_json::from_value::<PaymentMethod>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("payment_method: {e}")))?,
        transaction_id: row.try_get("transaction_id")?,
        failure_reason: row.try_get("failure_reason")?,
        attempts: row.try_get("attempts")?,
        booking_status: BookingState::parse(&booking_status).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown booking status {booking_status}"))
        })?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        metadata: row.try_get("metadata")?,
    })
}

/// [`PAYMENT_COLUMNS`] of the `payments` table aliased `p` (for statements joining other rows).
fn payment_columns_of_p() -> String {
    PAYMENT_COLUMNS
        .split(',')
        .map(|column| format!("p.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ordinal for a statement's rows (batches are far smaller than `i32::MAX`).
fn ordinal(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// The items of a batch, with their indexes, except those whose key repeats an earlier item's:
/// an event handled twice in one batch is a duplicate the second time, whatever became of it
/// the first time. Items without a key are all kept.
fn first_occurrences<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> Option<K>,
) -> Vec<(usize, &'a T)> {
    let mut seen = HashSet::new();
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| key(item).is_none_or(|k| seen.insert(k)))
        .collect()
}

#[async_trait::async_trait]
impl PaymentStore for PgPaymentStore {
    async fn open(&self, new: NewPayment) -> Result<Payment, StoreError> {
        let payment = new.into_payment();
        let sql = format!(
            "INSERT INTO payments (id, booking_id, user_id, user_email, amount, currency, status, \
             attempts, booking_status, created_at, updated_at, claimed_at, metadata, \
             user_email_as_of) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10, $11, $12) \
             ON CONFLICT (booking_id) DO NOTHING RETURNING {PAYMENT_COLUMNS}"
        );
        let inserted = sqlx::query(&sql)
            .bind(payment.id)
            .bind(payment.booking_id)
            .bind(payment.user_id)
            .bind(&payment.user_email)
            .bind(payment.amount)
            .bind(&payment.currency)
            .bind(payment.status.as_str())
            .bind(payment.attempts)
            .bind(payment.booking_status.as_str())
            .bind(payment.created_at)
            .bind(&payment.metadata)
            .bind(payment.user_email_as_of)
            .fetch_optional(&self.pool)
            .await?;
        match inserted {
            Some(row) => payment_from_row(&row),
            None => self
                .find_by_booking(payment.booking_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("payment vanished after conflict".into())),
        }
    }

    async fn complete_charge(
        &self,
        payment_id: Uuid,
        attempt: i32,
        result: &ChargeResult,
        event: &OutboxEntry,
        inbox: Option<&InboxMark>,
    ) -> Result<Effect<Payment>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(inbox) = inbox
            && !insert_inbox(&mut tx, inbox).await?
        {
            return Ok(Effect::Duplicate);
        }
        let method = serde_json::to_value(result.method())
            .map_err(|e| StoreError::Corrupt(format!("payment_method: {e}")))?;
        let sql = format!(
            "UPDATE payments SET status = $3, payment_method = $4, transaction_id = $5, \
             failure_reason = $6, updated_at = $7 \
             WHERE id = $1 AND attempts = $2 AND status = 'PENDING' RETURNING {PAYMENT_COLUMNS}"
        );
        let updated = sqlx::query(&sql)
            .bind(payment_id)
            .bind(attempt)
            .bind(result.status().as_str())
            .bind(method)
            .bind(result.transaction_id())
            .bind(result.failure_reason())
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = updated else {
            // Someone else recorded this attempt: keep the inbox mark, publish nothing.
            tx.commit().await?;
            return Ok(Effect::Duplicate);
        };
        let payment = payment_from_row(&row)?;
        insert_outbox(&mut tx, event).await?;
        tx.commit().await?;
        Ok(Effect::Applied(payment))
    }

    async fn start_retry(&self, payment_id: Uuid) -> Result<Payment, StoreError> {
        let sql = format!(
            "UPDATE payments SET status = 'PENDING', attempts = attempts + 1, \
             failure_reason = NULL, updated_at = $2, claimed_at = $2 \
             WHERE id = $1 AND status = 'FAILED' AND booking_status = 'PENDING' \
             RETURNING {PAYMENT_COLUMNS}"
        );
        let updated = sqlx::query(&sql)
            .bind(payment_id)
            .bind(now_millis())
            .fetch_optional(&self.pool)
            .await?;
        match updated {
            Some(row) => payment_from_row(&row),
            None => Err(retry_refusal(self.get(payment_id).await?, payment_id)),
        }
    }

    async fn claim_abandoned(
        &self,
        claimed_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        // SKIP LOCKED: a payment another recovery is taking over right now is left to it.
        let sql = format!(
            "UPDATE payments SET claimed_at = $2 WHERE id IN ( \
                 SELECT id FROM payments \
                 WHERE status = 'PENDING' AND (claimed_at IS NULL OR claimed_at < $1) \
                 ORDER BY claimed_at NULLS FIRST LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {PAYMENT_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(claimed_before)
            .bind(now_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(payment_from_row).collect()
    }

    async fn refund(
        &self,
        booking_id: Uuid,
        inbox: &InboxMark,
    ) -> Result<Effect<Option<Payment>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !insert_inbox(&mut tx, inbox).await? {
            return Ok(Effect::Duplicate);
        }
        let sql = format!(
            "UPDATE payments SET status = 'REFUNDED', updated_at = $2 \
             WHERE booking_id = $1 AND status = 'SUCCEEDED' RETURNING {PAYMENT_COLUMNS}"
        );
        let updated = sqlx::query(&sql)
            .bind(booking_id)
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await?;
        let payment = updated.map(|row| payment_from_row(&row)).transpose()?;
        tx.commit().await?;
        Ok(Effect::Applied(payment))
    }

    async fn set_booking_state(
        &self,
        booking_id: Uuid,
        state: BookingState,
        inbox: &InboxMark,
    ) -> Result<Effect<()>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !insert_inbox(&mut tx, inbox).await? {
            return Ok(Effect::Duplicate);
        }
        sqlx::query(
            "UPDATE payments SET booking_status = $2, updated_at = $3 \
             WHERE booking_id = $1 AND booking_status = 'PENDING'",
        )
        .bind(booking_id)
        .bind(state.as_str())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Effect::Applied(()))
    }

    async fn change_user_email(
        &self,
        user_id: Uuid,
        new_email: &str,
        as_of: DateTime<Utc>,
        inbox: &InboxMark,
    ) -> Result<Effect<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !insert_inbox(&mut tx, inbox).await? {
            return Ok(Effect::Duplicate);
        }
        let changed = sqlx::query(
            "UPDATE payments SET user_email = $2, user_email_as_of = $4, updated_at = $3 \
             WHERE user_id = $1 AND user_email_as_of < $4",
        )
        .bind(user_id)
        .bind(new_email)
        .bind(now_millis())
        .bind(as_of.trunc_subsecs(3))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Effect::Applied(changed.rows_affected()))
    }

    async fn mark_handled(&self, inbox: &InboxMark) -> Result<Effect<()>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let fresh = insert_inbox(&mut tx, inbox).await?;
        tx.commit().await?;
        Ok(if fresh {
            Effect::Applied(())
        } else {
            Effect::Duplicate
        })
    }

    async fn was_handled(&self, inbox: &InboxMark) -> Result<bool, StoreError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2")
                .bind(&inbox.consumer)
                .bind(inbox.event_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn handled_among(&self, marks: &[InboxMark]) -> Result<HashSet<Uuid>, StoreError> {
        // One statement per consumer: in practice every mark of a batch has the same one.
        let mut by_consumer: HashMap<&str, Vec<Uuid>> = HashMap::new();
        for mark in marks {
            by_consumer
                .entry(&mark.consumer)
                .or_default()
                .push(mark.event_id);
        }
        let mut handled = HashSet::new();
        for (consumer, event_ids) in by_consumer {
            let found: Vec<Uuid> = sqlx::query_scalar(
                "SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2)",
            )
            .bind(consumer)
            .bind(event_ids)
            .fetch_all(&self.pool)
            .await?;
            handled.extend(found);
        }
        Ok(handled)
    }

    async fn open_many(&self, new: Vec<NewPayment>) -> Result<Vec<Payment>, StoreError> {
        let wanted: Vec<Uuid> = new.iter().map(|n| n.booking_id).collect();
        // Each booking once: a booking named again later in the batch gets the same payment.
        let mut bookings = HashSet::new();
        let fresh: Vec<Payment> = new
            .into_iter()
            .filter(|n| bookings.insert(n.booking_id))
            .map(NewPayment::into_payment)
            .collect();
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        // The inserted rows, and in the same statement (same snapshot) the payments the
        // other bookings already had.
        let sql = format!(
            "WITH new AS ( \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], \
                     $5::numeric[], $6::text[], $7::text[], $8::int4[], $9::text[], \
                     $10::timestamptz[], $11::jsonb[], $12::timestamptz[]) \
                 AS n(id, booking_id, user_id, user_email, amount, currency, status, attempts, \
                     booking_status, created_at, metadata, user_email_as_of)), \
             inserted AS ( \
                 INSERT INTO payments (id, booking_id, user_id, user_email, amount, currency, \
                     status, attempts, booking_status, created_at, updated_at, claimed_at, \
                     metadata, user_email_as_of) \
                 SELECT id, booking_id, user_id, user_email, amount, currency, status, attempts, \
                     booking_status, created_at, created_at, created_at, metadata, \
                     user_email_as_of \
                 FROM new ORDER BY booking_id \
                 ON CONFLICT (booking_id) DO NOTHING RETURNING {PAYMENT_COLUMNS}) \
             SELECT {PAYMENT_COLUMNS} FROM inserted \
             UNION ALL \
             SELECT {PAYMENT_COLUMNS} FROM payments WHERE booking_id IN (SELECT booking_id FROM new)"
        );
        let rows = sqlx::query(&sql)
            .bind(column(&fresh, |p| p.id))
            .bind(column(&fresh, |p| p.booking_id))
            .bind(column(&fresh, |p| p.user_id))
            .bind(column(&fresh, |p| p.user_email.clone()))
            .bind(column(&fresh, |p| p.amount))
            .bind(column(&fresh, |p| p.currency.clone()))
            .bind(column(&fresh, |p| p.status.as_str()))
            .bind(column(&fresh, |p| p.attempts))
            .bind(column(&fresh, |p| p.booking_status.as_str()))
            .bind(column(&fresh, |p| p.created_at))
            .bind(column(&fresh, |p| p.metadata.clone()))
            .bind(column(&fresh, |p| p.user_email_as_of))
            .fetch_all(&self.pool)
            .await?;
        let mut found: HashMap<Uuid, Payment> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let payment = payment_from_row(row)?;
            found.insert(payment.booking_id, payment);
        }
        // A payment another transaction committed after this statement's snapshot made the
        // insert skip its booking but is not in the snapshot: read it now.
        let missing: Vec<Uuid> = bookings
            .into_iter()
            .filter(|booking| !found.contains_key(booking))
            .collect();
        if !missing.is_empty() {
            let sql = format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE booking_id = ANY($1::uuid[])"
            );
            for row in sqlx::query(&sql)
                .bind(missing)
                .fetch_all(&self.pool)
                .await?
            {
                let payment = payment_from_row(&row)?;
                found.insert(payment.booking_id, payment);
            }
        }
        wanted
            .into_iter()
            .map(|booking| {
                found
                    .get(&booking)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("payment vanished after conflict".into()))
            })
            .collect()
    }

    async fn complete_charges(
        &self,
        items: &[CompleteCharge],
    ) -> Result<Vec<Effect<Payment>>, StoreError> {
        // An inbox mark repeated in the batch finds the mark of its first occurrence.
        let batch = first_occurrences(items, |item| {
            item.inbox
                .as_ref()
                .map(|mark| (mark.consumer.as_str(), mark.event_id))
        });
        let mut outcomes = vec![Effect::Duplicate; items.len()];
        if batch.is_empty() {
            return Ok(outcomes);
        }
        let mut methods = Vec::with_capacity(batch.len());
        let mut payloads = Vec::with_capacity(batch.len());
        for (_, item) in &batch {
            methods.push(
                serde_json::to_value(item.result.method())
                    .map_err(|e| StoreError::Corrupt(format!("payment_method: {e}")))?,
            );
            payloads.push(serde_json::to_value(&item.event.envelope).map_err(|e| {
                silo_kit::outbox::OutboxError::from(silo_kit::events::EventError::from(e))
            })?);
        }
        // One statement, so one transaction: the inbox marks (kept even where the payment is
        // no longer PENDING at that attempt; taken in key order, as by every batch, so two
        // batches sharing events wait for each other instead of deadlocking), the results of
        // the items whose mark is new or absent (the first of several for one attempt), and
        // the events of the payments that moved.
        let sql = format!(
            "WITH item AS ( \
                 SELECT * FROM unnest($1::int4[], $2::uuid[], $3::int4[], $4::text[], \
                     $5::jsonb[], $6::text[], $7::text[], $8::text[], $9::uuid[], $10::text[], \
                     $11::uuid[], $12::text[], $13::text[], $14::jsonb[], $15::text[], \
                     $16::timestamptz[]) \
                 AS i(ord, payment_id, attempt, new_status, new_method, new_transaction_id, \
                     new_failure_reason, inbox_consumer, inbox_event_id, inbox_event_type, \
                     event_id, event_stream, event_type, event_payload, event_correlation_id, \
                     event_created_at)), \
             marked AS ( \
                 INSERT INTO inbox (consumer, event_id, event_type) \
                 SELECT inbox_consumer, inbox_event_id, inbox_event_type FROM item \
                 WHERE inbox_event_id IS NOT NULL ORDER BY inbox_consumer, inbox_event_id \
                 ON CONFLICT DO NOTHING RETURNING consumer, event_id), \
             eligible AS ( \
                 SELECT DISTINCT ON (payment_id, attempt) * FROM item \
                 WHERE inbox_event_id IS NULL OR EXISTS (SELECT 1 FROM marked m \
                     WHERE m.consumer = item.inbox_consumer AND m.event_id = item.inbox_event_id) \
                 ORDER BY payment_id, attempt, ord), \
             moved AS ( \
                 UPDATE payments p SET status = e.new_status, payment_method = e.new_method, \
                     transaction_id = e.new_transaction_id, \
                     failure_reason = e.new_failure_reason, updated_at = $17 \
                 FROM eligible e \
                 WHERE p.id = e.payment_id AND p.attempts = e.attempt AND p.status = 'PENDING' \
                 RETURNING e.ord AS moved_ord, {moved_columns}), \
             published AS ( \
                 INSERT INTO outbox (event_id, stream, event_type, payload, correlation_id, \
                     created_at) \
                 SELECT i.event_id, i.event_stream, i.event_type, i.event_payload, \
                     i.event_correlation_id, i.event_created_at \
                 FROM item i JOIN moved ON moved.moved_ord = i.ord ORDER BY i.ord) \
             SELECT * FROM moved",
            moved_columns = payment_columns_of_p(),
        );
        let rows = sqlx::query(&sql)
            .bind(batch.iter().map(|(i, _)| ordinal(*i)).collect::<Vec<_>>())
            .bind(column(&batch, |(_, c)| c.payment_id))
            .bind(column(&batch, |(_, c)| c.attempt))
            .bind(column(&batch, |(_, c)| c.result.status().as_str()))
            .bind(methods)
            .bind(column(&batch, |(_, c)| c.result.transaction_id()))
            .bind(column(&batch, |(_, c)| c.result.failure_reason()))
            .bind(column(&batch, |(_, c)| {
                c.inbox.as_ref().map(|m| m.consumer.as_str())
            }))
            .bind(column(&batch, |(_, c)| {
                c.inbox.as_ref().map(|m| m.event_id)
            }))
            .bind(column(&batch, |(_, c)| {
                c.inbox.as_ref().map(|m| m.event_type.as_str())
            }))
            .bind(column(&batch, |(_, c)| c.event.envelope.event_id))
            .bind(column(&batch, |(_, c)| c.event.stream.as_str()))
            .bind(column(&batch, |(_, c)| {
                c.event.envelope.event_type.as_str()
            }))
            .bind(payloads)
            .bind(column(&batch, |(_, c)| {
                c.event.envelope.correlation_id.as_str()
            }))
            .bind(column(&batch, |(_, c)| c.event.envelope.occurred_at))
            .bind(now_millis())
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let index: i32 = row.try_get("moved_ord")?;
            let slot = usize::try_from(index)
                .ok()
                .and_then(|index| outcomes.get_mut(index))
                .ok_or_else(|| StoreError::Corrupt(format!("unknown batch item {index}")))?;
            *slot = Effect::Applied(payment_from_row(row)?);
        }
        Ok(outcomes)
    }

    async fn set_booking_states(
        &self,
        items: &[(Uuid, BookingState, InboxMark)],
    ) -> Result<Vec<Effect<()>>, StoreError> {
        let batch = first_occurrences(items, |(_, _, mark)| {
            Some((mark.consumer.as_str(), mark.event_id))
        });
        let mut outcomes = vec![Effect::Duplicate; items.len()];
        if batch.is_empty() {
            return Ok(outcomes);
        }
        // One statement: the inbox marks, and for the events new to the inbox the first
        // decision on each booking (a later one finds the booking no longer PENDING).
        let fresh: Vec<i32> = sqlx::query_scalar(
            "WITH item AS ( \
                 SELECT * FROM unnest($1::int4[], $2::uuid[], $3::text[], $4::text[], \
                     $5::uuid[], $6::text[]) \
                 AS i(ord, booking_id, state, consumer, event_id, event_type)), \
             marked AS ( \
                 INSERT INTO inbox (consumer, event_id, event_type) \
                 SELECT consumer, event_id, event_type FROM item ORDER BY consumer, event_id \
                 ON CONFLICT DO NOTHING RETURNING consumer, event_id), \
             fresh AS (SELECT item.* FROM item JOIN marked USING (consumer, event_id)), \
             decided AS ( \
                 SELECT DISTINCT ON (booking_id) booking_id, state FROM fresh \
                 ORDER BY booking_id, ord), \
             changed AS ( \
                 UPDATE payments p SET booking_status = d.state, updated_at = $7 \
                 FROM decided d \
                 WHERE p.booking_id = d.booking_id AND p.booking_status = 'PENDING') \
             SELECT ord FROM fresh",
        )
        .bind(batch.iter().map(|(i, _)| ordinal(*i)).collect::<Vec<_>>())
        .bind(batch.iter().map(|(_, (b, _, _))| *b).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|(_, (_, state, _))| state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|(_, (_, _, m))| m.consumer.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|(_, (_, _, m))| m.event_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|(_, (_, _, m))| m.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(now_millis())
        .fetch_all(&self.pool)
        .await?;
        for index in fresh {
            let slot = usize::try_from(index)
                .ok()
                .and_then(|index| outcomes.get_mut(index))
                .ok_or_else(|| StoreError::Corrupt(format!("unknown batch item {index}")))?;
            *slot = Effect::Applied(());
        }
        Ok(outcomes)
    }

    async fn get(&self, payment_id: Uuid) -> Result<Option<Payment>, StoreError> {
        self.fetch_one_by("id", payment_id).await
    }

    async fn find_by_booking(&self, booking_id: Uuid) -> Result<Option<Payment>, StoreError> {
        self.fetch_one_by("booking_id", booking_id).await
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        PgDeadLetters::new(self.pool.clone())
            .record(letter)
            .await
            .map_err(|e| StoreError::DeadLetter(format!("{e:#}")))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The error for a retry that was refused, naming why.
pub(super) fn retry_refusal(current: Option<Payment>, payment_id: Uuid) -> StoreError {
    match current {
        None => StoreError::NotFound(payment_id),
        Some(p) if p.status != PaymentStatus::Failed => StoreError::Conflict(format!(
            "only a FAILED payment can be retried; this one is {}",
            p.status.as_str()
        )),
        Some(p) => StoreError::Conflict(format!(
            "the booking of this payment is {}, no longer PENDING",
            p.booking_status.as_str()
        )),
    }
}

/// One column of a batch, as an array to bind.
fn column<'a, I, T>(items: &'a [I], value: impl Fn(&'a I) -> T) -> Vec<T> {
    items.iter().map(value).collect()
}

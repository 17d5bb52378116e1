//! The PostgreSQL payment store (used where no MongoDB is available).

use super::{DeadLetter, Effect, InboxMark, OutboxEntry, PaymentStore, StoreError};
use crate::payment::{
    BookingState, ChargeResult, NewPayment, Payment, PaymentMethod, PaymentStatus, now_millis,
};
use chrono::{DateTime, SubsecRound, Utc};
use silo_kit::consumer::DeadLetterSink;
use silo_kit::inbox::postgres::PgDeadLetters;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
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

//! Bookings, the known-users replica and the saga's audit trail in PostgreSQL. Every change
//! other services must hear about commits with its outbox record; every change caused by an
//! event commits with its inbox mark.

use crate::booking::{Booking, BookingStatus, PaymentOutcome, Reaction, react};
use crate::cursor::Cursor;
use crate::new_booking::NewBooking;
use chrono::{DateTime, SubsecRound, Utc};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{BookingCancelled, BookingConfirmed, BookingCreated, RefundRequested};
use silo_kit::outbox::OutboxError;
use silo_kit::outbox::postgres::enqueue;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The outbox write failed.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    /// A stored value could not be read back.
    #[error("corrupt stored booking: {0}")]
    Corrupt(String),
}

/// A user this service knows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUser {
    /// The user's id.
    pub user_id: Uuid,
    /// Their current email.
    pub email: String,
    /// Their full name, when known.
    pub full_name: Option<String>,
}

/// Which bookings to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this user's bookings (`None`: everyone's, for admins).
    pub user_id: Option<Uuid>,
    /// Only bookings in this status.
    pub status: Option<BookingStatus>,
    /// Page size.
    pub limit: u32,
    /// Continue after this position.
    pub after: Option<Cursor>,
}

/// One page of bookings, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The bookings.
    pub items: Vec<Booking>,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

/// What became of a cancellation request.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancellation {
    /// The booking was `PENDING` and is now `CANCELLED`.
    Cancelled(Booking),
    /// The booking had already left `PENDING`.
    NotPending(Booking),
    /// No such booking.
    NotFound,
}

const BOOKING_COLUMNS: &str = "id, user_id, user_email, event_name, ticket_count, total_amount, \
     currency, status, cancellation_reason, created_at, updated_at";

fn booking_from_row(row: &PgRow) -> Result<Booking, RepositoryError> {
    let status: String = row.try_get("status")?;
    let currency: String = row.try_get("currency")?;
    Ok(Booking {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        user_email: row.try_get("user_email")?,
        event_name: row.try_get("event_name")?,
        ticket_count: row.try_get("ticket_count")?,
        total_amount: row.try_get("total_amount")?,
        currency: currency.trim().to_string(),
        status: BookingStatus::parse(&status)
            .ok_or_else(|| RepositoryError::Corrupt(format!("unknown status {status}")))?,
        cancellation_reason: row.try_get("cancellation_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The booking-service database.
#[derive(Debug, Clone)]
pub struct BookingRepository {
    pool: PgPool,
}

impl BookingRepository {
    /// A repository on `pool` (migrated by [`crate::startup`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool (readiness checks, relay).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores a `PENDING` booking and its `BookingCreated` event in one transaction.
    pub async fn create(
        &self,
        user_id: Uuid,
        user_email: &str,
        new: &NewBooking,
        correlation_id: &CorrelationId,
    ) -> Result<Booking, RepositoryError> {
        let booking = pending_booking(user_id, user_email, new);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO bookings (id, user_id, user_email, event_name, ticket_count, \
             total_amount, currency, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(booking.id)
        .bind(booking.user_id)
        .bind(&booking.user_email)
        .bind(&booking.event_name)
        .bind(booking.ticket_count)
        .bind(booking.total_amount)
        .bind(&booking.currency)
        .bind(booking.status.as_str())
        .bind(booking.created_at)
        .execute(&mut *tx)
        .await?;
        enqueue(&mut tx, &booking_created(&booking), correlation_id).await?;
        tx.commit().await?;
        Ok(booking)
    }

    /// Like [`Self::create`] for a user of the local replica, whose email is copied from
    /// `known_users` by the insert itself (one round trip less than reading it first);
    /// `None`, and nothing written, when the replica does not know the user.
    pub async fn create_for_known_user(
        &self,
        user_id: Uuid,
        new: &NewBooking,
        correlation_id: &CorrelationId,
    ) -> Result<Option<Booking>, RepositoryError> {
        let mut booking = pending_booking(user_id, "", new);
        let mut tx = self.pool.begin().await?;
        let email: Option<String> = sqlx::query_scalar(
            "INSERT INTO bookings (id, user_id, user_email, event_name, ticket_count, \
             total_amount, currency, status, created_at, updated_at) \
             SELECT $1, user_id, email, $3, $4, $5, $6, $7, $8, $8 \
             FROM known_users WHERE user_id = $2 RETURNING user_email",
        )
        .bind(booking.id)
        .bind(booking.user_id)
        .bind(&booking.event_name)
        .bind(booking.ticket_count)
        .bind(booking.total_amount)
        .bind(&booking.currency)
        .bind(booking.status.as_str())
        .bind(booking.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(email) = email else {
            return Ok(None);
        };
        booking.user_email = email;
        enqueue(&mut tx, &booking_created(&booking), correlation_id).await?;
        tx.commit().await?;
        Ok(Some(booking))
    }

    /// The booking with this id.
    pub async fn get(&self, id: Uuid) -> Result<Option<Booking>, RepositoryError> {
        let sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| booking_from_row(&row))
            .transpose()
    }

    /// A page of bookings, newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Page, RepositoryError> {
        let sql = format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings \
             WHERE ($1::uuid IS NULL OR user_id = $1) \
               AND ($2::text IS NULL OR status = $2) \
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.user_id)
            .bind(filter.status.map(BookingStatus::as_str))
            .bind(filter.after.map(|c| c.created_at))
            .bind(filter.after.map(|c| c.id))
            .bind(i64::from(filter.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows
            .iter()
            .map(booking_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > filter.limit as usize;
        items.truncate(filter.limit as usize);
        let next = more.then(|| items.last()).flatten().map(|last| Cursor {
            created_at: last.created_at,
            id: last.id,
        });
        Ok(Page { items, next })
    }

    /// Cancels a `PENDING` booking on its owner's request, emitting `BookingCancelled`.
    pub async fn cancel(
        &self,
        id: Uuid,
        reason: &str,
        correlation_id: &CorrelationId,
    ) -> Result<Cancellation, RepositoryError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE bookings SET status = 'CANCELLED', cancellation_reason = $2, updated_at = $3 \
             WHERE id = $1 AND status = 'PENDING' RETURNING {BOOKING_COLUMNS}"
        );
        let updated = sqlx::query(&sql)
            .bind(id)
            .bind(reason)
            .bind(now())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = updated else {
            drop(tx);
            return Ok(match self.get(id).await? {
                Some(booking) => Cancellation::NotPending(booking),
                None => Cancellation::NotFound,
            });
        };
        let booking = booking_from_row(&row)?;
        let event = BookingCancelled {
            booking_id: id,
            reason: reason.to_string(),
        };
        enqueue(&mut tx, &event, correlation_id).await?;
        tx.commit().await?;
        Ok(Cancellation::Cancelled(booking))
    }

    /// Applies a payment outcome to its booking (the saga step) on the consumer's transaction
    /// (which holds the inbox mark): the status change, the audit record and the resulting
    /// event commit together.
    pub async fn apply_payment_outcome(
        conn: &mut PgConnection,
        event_id: Uuid,
        booking_id: Uuid,
        outcome: &PaymentOutcome,
        correlation_id: &CorrelationId,
    ) -> Result<Reaction, RepositoryError> {
        let payment_id = outcome.payment_id();
        // Almost every outcome finds its booking still PENDING: move it with one conditional
        // statement, and lock and read the booking only when that does not apply.
        let if_pending = react(BookingStatus::Pending, outcome);
        let reaction = if move_pending(conn, booking_id, payment_id, &if_pending).await? {
            if_pending
        } else {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM bookings WHERE id = $1 FOR UPDATE")
                    .bind(booking_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            match status {
                None => {
                    tracing::warn!(%booking_id, "payment outcome for an unknown booking; recorded only");
                    Reaction::Record
                }
                Some(status) => {
                    let status = BookingStatus::parse(&status).ok_or_else(|| {
                        RepositoryError::Corrupt(format!("unknown status {status}"))
                    })?;
                    let reaction = react(status, outcome);
                    // Still PENDING only if it was created after the statement above began.
                    move_pending(conn, booking_id, payment_id, &reaction).await?;
                    reaction
                }
            }
        };
        match &reaction {
            Reaction::Confirm => {
                let event = BookingConfirmed {
                    booking_id,
                    payment_id,
                };
                enqueue(&mut *conn, &event, correlation_id).await?;
            }
            Reaction::Cancel(reason) => {
                let event = BookingCancelled {
                    booking_id,
                    reason: reason.clone(),
                };
                enqueue(&mut *conn, &event, correlation_id).await?;
            }
            Reaction::RequestRefund => {
                let event = RefundRequested {
                    payment_id,
                    booking_id,
                };
                enqueue(&mut *conn, &event, correlation_id).await?;
            }
            Reaction::Record => {}
        }
        record_outcome(conn, event_id, booking_id, outcome, &reaction).await?;
        Ok(reaction)
    }

    /// Adds a registered user to the local replica (on the consumer's transaction). A
    /// registration is the earliest fact about a user: a row already there is at least as new.
    pub async fn remember_user(
        conn: &mut PgConnection,
        user: &KnownUser,
        as_of: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        sqlx::query(
            "INSERT INTO known_users (user_id, email, email_as_of, full_name) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE \
             SET full_name = COALESCE(known_users.full_name, EXCLUDED.full_name)",
        )
        .bind(user.user_id)
        .bind(&user.email)
        .bind(as_of)
        .bind(&user.full_name)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records a user just read from user-service's API (the freshest copy there is).
    pub async fn cache_user(&self, user: &KnownUser) -> Result<(), RepositoryError> {
        sqlx::query(
            "INSERT INTO known_users (user_id, email, email_as_of, full_name) \
             VALUES ($1, $2, now(), $3) ON CONFLICT (user_id) DO UPDATE \
             SET email = EXCLUDED.email, email_as_of = EXCLUDED.email_as_of, \
                 full_name = EXCLUDED.full_name, updated_at = now()",
        )
        .bind(user.user_id)
        .bind(&user.email)
        .bind(&user.full_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the email in the replica and on all of the user's bookings (on the consumer's
    /// transaction), unless the replica already holds a newer email; returns how many bookings
    /// changed.
    pub async fn change_user_email(
        conn: &mut PgConnection,
        user_id: Uuid,
        new_email: &str,
        as_of: DateTime<Utc>,
    ) -> Result<u64, RepositoryError> {
        let newer = sqlx::query(
            "INSERT INTO known_users (user_id, email, email_as_of) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE \
             SET email = EXCLUDED.email, email_as_of = EXCLUDED.email_as_of, updated_at = now() \
             WHERE known_users.email_as_of < EXCLUDED.email_as_of",
        )
        .bind(user_id)
        .bind(new_email)
        .bind(as_of)
        .execute(&mut *conn)
        .await?;
        if newer.rows_affected() == 0 {
            return Ok(0);
        }
        let changed = sqlx::query(
            "UPDATE bookings SET user_email = $2, updated_at = $3 \
             WHERE user_id = $1 AND user_email <> $2",
        )
        .bind(user_id)
        .bind(new_email)
        .bind(now())
        .execute(&mut *conn)
        .await?;
        Ok(changed.rows_affected())
    }

    /// The user from the local replica.
    pub async fn known_user(&self, user_id: Uuid) -> Result<Option<KnownUser>, RepositoryError> {
        let row =
            sqlx::query("SELECT user_id, email, full_name FROM known_users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(KnownUser {
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                full_name: row.try_get("full_name")?,
            })
        })
        .transpose()
    }
}

/// A new `PENDING` booking, not stored yet.
fn pending_booking(user_id: Uuid, user_email: &str, new: &NewBooking) -> Booking {
    let at = now();
    Booking {
        id: Uuid::now_v7(),
        user_id,
        user_email: user_email.to_string(),
        event_name: new.event_name.clone(),
        ticket_count: new.ticket_count,
        total_amount: new.total_amount,
        currency: new.currency.clone(),
        status: BookingStatus::Pending,
        created_at: at,
        updated_at: at,
        cancellation_reason: None,
    }
}

/// The event announcing `booking`.
fn booking_created(booking: &Booking) -> BookingCreated {
    BookingCreated {
        booking_id: booking.id,
        user_id: booking.user_id,
        user_email: booking.user_email.clone(),
        event_name: booking.event_name.clone(),
        ticket_count: booking.ticket_count,
        total_amount: booking.total_amount,
        currency: booking.currency.clone(),
    }
}

/// Moves a `PENDING` booking as `reaction` says (confirm or cancel); `false` when the reaction
/// moves nothing or the booking is not `PENDING` (or does not exist).
async fn move_pending(
    conn: &mut PgConnection,
    booking_id: Uuid,
    payment_id: Uuid,
    reaction: &Reaction,
) -> Result<bool, RepositoryError> {
    let moved = match reaction {
        Reaction::Confirm => {
            sqlx::query(
                "UPDATE bookings SET status = 'CONFIRMED', payment_id = $2, updated_at = $3 \
                 WHERE id = $1 AND status = 'PENDING'",
            )
            .bind(booking_id)
            .bind(payment_id)
            .bind(now())
            .execute(&mut *conn)
            .await?
        }
        Reaction::Cancel(reason) => {
            sqlx::query(
                "UPDATE bookings SET status = 'CANCELLED', cancellation_reason = $2, \
                 payment_id = $3, updated_at = $4 WHERE id = $1 AND status = 'PENDING'",
            )
            .bind(booking_id)
            .bind(reason)
            .bind(payment_id)
            .bind(now())
            .execute(&mut *conn)
            .await?
        }
        Reaction::RequestRefund | Reaction::Record => return Ok(false),
    };
    Ok(moved.rows_affected() == 1)
}

async fn record_outcome(
    conn: &mut PgConnection,
    event_id: Uuid,
    booking_id: Uuid,
    outcome: &PaymentOutcome,
    reaction: &Reaction,
) -> Result<(), RepositoryError> {
    sqlx::query(
        "INSERT INTO payment_outcomes (event_id, booking_id, payment_id, outcome, reaction) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(booking_id)
    .bind(outcome.payment_id())
    .bind(outcome.kind())
    .bind(reaction.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

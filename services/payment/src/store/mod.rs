//! Persistence of payments, behind one trait with a PostgreSQL and a MongoDB implementation.
//!
//! Every state change that other services must hear about is written together with its
//! outbox record, and every change caused by an incoming event together with its inbox
//! mark, in one transaction of the store.

mod mongo;
mod postgres;

pub use mongo::MongoPaymentStore;
pub use postgres::PgPaymentStore;

use crate::payment::{BookingState, ChargeResult, NewPayment, Payment};
use chrono::{DateTime, Utc};
pub use silo_kit::consumer::DeadLetter;
use silo_kit::events::Envelope;
use uuid::Uuid;

/// An event to publish, written to the store's outbox with the change that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The producing stream's token (`payments`); the relay derives the subject from it.
    pub stream: String,
    /// The envelope; its `eventId` becomes the JetStream `Nats-Msg-Id`.
    pub envelope: Envelope,
}

/// "Consumer `consumer` has handled event `event_id`": stored with the effect of that event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMark {
    /// The durable consumer's name.
    pub consumer: String,
    /// The handled event's id.
    pub event_id: Uuid,
    /// The handled event's type.
    pub event_type: String,
}

/// Whether an event-driven change was applied, or the event had been handled before.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<T> {
    /// Applied now, with its result.
    Applied(T),
    /// The inbox already held this event: nothing was changed.
    Duplicate,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No payment with this id.
    #[error("payment {0} not found")]
    NotFound(Uuid),
    /// The payment is not in a state that allows the operation.
    #[error("{0}")]
    Conflict(String),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// PostgreSQL migrations failed.
    #[error("postgres migrations: {0}")]
    Migrate(#[from] silo_kit::postgres::DatabaseError),
    /// MongoDB failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The outbox write failed.
    #[error("outbox: {0}")]
    Outbox(#[from] silo_kit::outbox::OutboxError),
    /// A dead letter could not be recorded.
    #[error("dead letter: {0}")]
    DeadLetter(String),
    /// A stored value could not be read back.
    #[error("corrupt stored payment: {0}")]
    Corrupt(String),
}

/// Where payments, their outbox, inbox and dead letters live.
#[async_trait::async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Stores a `PENDING` payment for the booking with its first attempt claimed now, or returns
    /// the payment the booking already has.
    async fn open(&self, new: NewPayment) -> Result<Payment, StoreError>;

    /// Records the result of charge attempt `attempt` on a `PENDING` payment, with its event and
    /// (for event-driven charges) the inbox mark, atomically. A payment that is no longer
    /// `PENDING` at that attempt is left as it is and returned with `Effect::Duplicate`.
    async fn complete_charge(
        &self,
        payment_id: Uuid,
        attempt: i32,
        result: &ChargeResult,
        event: &OutboxEntry,
        inbox: Option<&InboxMark>,
    ) -> Result<Effect<Payment>, StoreError>;

    /// Moves a `FAILED` payment of a still-`PENDING` booking back to `PENDING` for one more
    /// attempt, claimed now; `Conflict` otherwise. ([`Self::open`] claims the first attempt.)
    async fn start_retry(&self, payment_id: Uuid) -> Result<Payment, StoreError>;

    /// Takes over up to `limit` `PENDING` payments whose current attempt was claimed before
    /// `claimed_before` (their claimer is presumed dead): claims them again, now, so no other
    /// recovery takes them meanwhile, and returns them (same attempt number).
    async fn claim_abandoned(
        &self,
        claimed_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError>;

    /// Marks the booking's `SUCCEEDED` payment `REFUNDED` (other payments are left as they are).
    async fn refund(
        &self,
        booking_id: Uuid,
        inbox: &InboxMark,
    ) -> Result<Effect<Option<Payment>>, StoreError>;

    /// Records what became of the booking a payment belongs to.
    async fn set_booking_state(
        &self,
        booking_id: Uuid,
        state: BookingState,
        inbox: &InboxMark,
    ) -> Result<Effect<()>, StoreError>;

    /// Replaces the email copy on the user's payments whose copy is older than `as_of`;
    /// returns how many changed.
    async fn change_user_email(
        &self,
        user_id: Uuid,
        new_email: &str,
        as_of: DateTime<Utc>,
        inbox: &InboxMark,
    ) -> Result<Effect<u64>, StoreError>;

    /// Marks an event handled without any other change (events that need no effect).
    async fn mark_handled(&self, inbox: &InboxMark) -> Result<Effect<()>, StoreError>;

    /// Whether the inbox holds this event already.
    async fn was_handled(&self, inbox: &InboxMark) -> Result<bool, StoreError>;

    /// The payment with this id.
    async fn get(&self, payment_id: Uuid) -> Result<Option<Payment>, StoreError>;

    /// The payment of a booking.
    async fn find_by_booking(&self, booking_id: Uuid) -> Result<Option<Payment>, StoreError>;

    /// Keeps a message that could not be handled.
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

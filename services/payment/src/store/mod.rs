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
use std::collections::HashSet;
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

/// One charge outcome to record with [`PaymentStore::complete_charges`]: the arguments of one
/// [`PaymentStore::complete_charge`].
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteCharge {
    /// The payment charged.
    pub payment_id: Uuid,
    /// The attempt the result belongs to.
    pub attempt: i32,
    /// What the gateway answered.
    pub result: ChargeResult,
    /// The event announcing the result (written only if the result is recorded).
    pub event: OutboxEntry,
    /// The inbox mark of the event that caused the charge, if any.
    pub inbox: Option<InboxMark>,
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

    /// The event ids among `marks` that the inbox holds already (each mark with its own
    /// consumer). The default asks [`Self::was_handled`] for each.
    async fn handled_among(&self, marks: &[InboxMark]) -> Result<HashSet<Uuid>, StoreError> {
        let mut handled = HashSet::new();
        for mark in marks {
            if self.was_handled(mark).await? {
                handled.insert(mark.event_id);
            }
        }
        Ok(handled)
    }

    /// [`Self::open`] for each of `new`, in order: one payment per input (the one its booking
    /// already has, if any; an input repeating an earlier input's booking gets that payment).
    /// The default opens them one by one.
    async fn open_many(&self, new: Vec<NewPayment>) -> Result<Vec<Payment>, StoreError> {
        let mut opened = Vec::with_capacity(new.len());
        for one in new {
            opened.push(self.open(one).await?);
        }
        Ok(opened)
    }

    /// [`Self::complete_charge`] for each item, in order, with the same outcome each would
    /// have had on its own after the items before it; one outcome per item. Stores that can
    /// write them in one transaction do; the default completes them one by one.
    async fn complete_charges(
        &self,
        items: &[CompleteCharge],
    ) -> Result<Vec<Effect<Payment>>, StoreError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(
                self.complete_charge(
                    item.payment_id,
                    item.attempt,
                    &item.result,
                    &item.event,
                    item.inbox.as_ref(),
                )
                .await?,
            );
        }
        Ok(outcomes)
    }

    /// [`Self::set_booking_state`] for each `(booking, state, inbox)`, in order, with the
    /// outcome each would have had on its own after the items before it. Stores that can
    /// write them in one transaction do; the default sets them one by one.
    async fn set_booking_states(
        &self,
        items: &[(Uuid, BookingState, InboxMark)],
    ) -> Result<Vec<Effect<()>>, StoreError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for (booking_id, state, inbox) in items {
            outcomes.push(self.set_booking_state(*booking_id, *state, inbox).await?);
        }
        Ok(outcomes)
    }

    /// The payment with this id.
    async fn get(&self, payment_id: Uuid) -> Result<Option<Payment>, StoreError>;

    /// The payment of a booking.
    async fn find_by_booking(&self, booking_id: Uuid) -> Result<Option<Payment>, StoreError>;

    /// Keeps a message that could not be handled.
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

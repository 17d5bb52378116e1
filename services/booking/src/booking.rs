//! The booking record and its status machine.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a booking stands in the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    /// Created; waits for its payment.
    Pending,
    /// Paid.
    Confirmed,
    /// Cancelled by its owner or because its payment failed.
    Cancelled,
}

impl BookingStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the stored (and query-string) spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(Self::Pending),
            "CONFIRMED" => Some(Self::Confirmed),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// One booking, as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    /// The booking's id.
    pub id: Uuid,
    /// Who booked (the token's subject).
    pub user_id: Uuid,
    /// A copy of the user's email, kept fresh by `UserEmailChanged`.
    pub user_email: String,
    /// What was booked.
    pub event_name: String,
    /// How many tickets (1–100).
    pub ticket_count: i32,
    /// The amount to pay, a decimal string (`"12.50"`).
    #[schema(schema_with = silo_kit::openapi::amount_string)]
    pub total_amount: Decimal,
    /// ISO 4217 currency.
    pub currency: String,
    /// Where the booking stands.
    pub status: BookingStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Why it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
}

/// What a payment event says about a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// The payment succeeded.
    Succeeded {
        /// The payment.
        payment_id: Uuid,
    },
    /// The payment failed.
    Failed {
        /// The payment.
        payment_id: Uuid,
        /// Why.
        reason: String,
    },
}

impl PaymentOutcome {
    /// The stored name of the outcome (audit trail).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "SUCCEEDED",
            Self::Failed { .. } => "FAILED",
        }
    }

    /// The payment's id.
    pub fn payment_id(&self) -> Uuid {
        match self {
            Self::Succeeded { payment_id } | Self::Failed { payment_id, .. } => *payment_id,
        }
    }
}

/// What the booking does about a payment outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// `PENDING` → `CONFIRMED`, emits `BookingConfirmed`.
    Confirm,
    /// `PENDING` → `CANCELLED` with this reason, emits `BookingCancelled` (compensation).
    Cancel(String),
    /// The booking was cancelled but its payment went through: emit `RefundRequested`.
    RequestRefund,
    /// The booking already reached a final state; the outcome is only recorded.
    Record,
}

impl Reaction {
    /// The stored name of the reaction (audit trail).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Confirm => "CONFIRMED",
            Self::Cancel(_) => "CANCELLED",
            Self::RequestRefund => "REFUND_REQUESTED",
            Self::Record => "RECORDED",
        }
    }
}

/// The saga's rule: only a `PENDING` booking moves, and a `CANCELLED` one never becomes
/// `CONFIRMED`; money taken for a cancelled booking is asked back.
pub fn react(status: BookingStatus, outcome: &PaymentOutcome) -> Reaction {
    match (status, outcome) {
        (BookingStatus::Pending, PaymentOutcome::Succeeded { .. }) => Reaction::Confirm,
        (BookingStatus::Pending, PaymentOutcome::Failed { reason, .. }) => {
            Reaction::Cancel(format!("payment failed: {reason}"))
        }
        (BookingStatus::Cancelled, PaymentOutcome::Succeeded { .. }) => Reaction::RequestRefund,
        (BookingStatus::Confirmed, _)
        | (BookingStatus::Cancelled, PaymentOutcome::Failed { .. }) => Reaction::Record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeeded() -> PaymentOutcome {
        PaymentOutcome::Succeeded {
            payment_id: Uuid::nil(),
        }
    }

    fn failed() -> PaymentOutcome {
        PaymentOutcome::Failed {
            payment_id: Uuid::nil(),
            reason: "card declined".into(),
        }
    }

    #[test]
    fn a_pending_booking_is_confirmed_by_a_successful_payment() {
        assert_eq!(
            react(BookingStatus::Pending, &succeeded()),
            Reaction::Confirm
        );
    }

    #[test]
    fn a_pending_booking_is_cancelled_with_the_payment_failure_reason() {
        assert_eq!(
            react(BookingStatus::Pending, &failed()),
            Reaction::Cancel("payment failed: card declined".into())
        );
    }

    #[test]
    fn a_cancelled_booking_is_never_confirmed_and_asks_for_a_refund() {
        assert_eq!(
            react(BookingStatus::Cancelled, &succeeded()),
            Reaction::RequestRefund
        );
    }

    #[test]
    fn final_bookings_only_record_other_outcomes() {
        assert_eq!(
            react(BookingStatus::Confirmed, &succeeded()),
            Reaction::Record
        );
        assert_eq!(react(BookingStatus::Confirmed, &failed()), Reaction::Record);
        assert_eq!(react(BookingStatus::Cancelled, &failed()), Reaction::Record);
    }

    #[test]
    fn statuses_round_trip_through_their_stored_spelling() {
        for status in [
            BookingStatus::Pending,
            BookingStatus::Confirmed,
            BookingStatus::Cancelled,
        ] {
            assert_eq!(BookingStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(BookingStatus::parse("pending"), None);
    }
}

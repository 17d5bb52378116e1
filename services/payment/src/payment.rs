//! The payment record and its status machine.

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a payment stands with the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Created, not yet charged (or a charge is in flight).
    Pending,
    /// Captured by the gateway.
    Succeeded,
    /// Declined by the gateway.
    Failed,
    /// Given back after the booking was cancelled.
    Refunded,
}

impl PaymentStatus {
    /// The stored spelling (`PENDING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Refunded => "REFUNDED",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(Self::Pending),
            "SUCCEEDED" => Some(Self::Succeeded),
            "FAILED" => Some(Self::Failed),
            "REFUNDED" => Some(Self::Refunded),
            _ => None,
        }
    }
}

/// What payment-service knows of the booking a payment belongs to (fed by booking events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingState {
    /// The booking still waits for its payment.
    Pending,
    /// The booking was confirmed.
    Confirmed,
    /// The booking was cancelled.
    Cancelled,
}

impl BookingState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(Self::Pending),
            "CONFIRMED" => Some(Self::Confirmed),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// The instrument a payment was charged to, as reported by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentMethod {
    /// `CreditCard`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The last four digits of the card.
    pub last4: String,
    /// The card brand.
    pub brand: String,
}

/// One payment: exactly one exists per booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// The payment's id.
    pub id: Uuid,
    /// The booking it pays for (unique).
    pub booking_id: Uuid,
    /// The user who booked.
    pub user_id: Uuid,
    /// A copy of the user's email, kept fresh by `UserEmailChanged`.
    pub user_email: Option<String>,
    /// When the email copy was true (an older change never overwrites a newer copy).
    pub user_email_as_of: DateTime<Utc>,
    /// The amount charged.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(schema_with = silo_kit::openapi::amount_string)]
    pub amount: Decimal,
    /// ISO currency code.
    pub currency: String,
    /// Where the payment stands.
    pub status: PaymentStatus,
    /// The instrument charged, once a charge was attempted.
    pub payment_method: Option<PaymentMethod>,
    /// The gateway's transaction id of a successful charge.
    pub transaction_id: Option<String>,
    /// Why the gateway declined, for `FAILED` payments.
    pub failure_reason: Option<String>,
    /// How many charges were attempted (a retry adds one).
    pub attempts: i32,
    /// What is known of the booking's state.
    pub booking_status: BookingState,
    /// When the payment was created.
    pub created_at: DateTime<Utc>,
    /// When the payment last changed.
    pub updated_at: DateTime<Utc>,
    /// Free-form context (correlation id, source event).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// The fields of a payment to open for a new booking.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    /// The booking to pay for.
    pub booking_id: Uuid,
    /// The user who booked.
    pub user_id: Uuid,
    /// The user's email if known.
    pub user_email: Option<String>,
    /// When that email was true (the announcing event's time).
    pub user_email_as_of: DateTime<Utc>,
    /// The amount to charge.
    pub amount: Decimal,
    /// ISO currency code.
    pub currency: String,
    /// Free-form context stored with the payment.
    pub metadata: serde_json::Value,
}

impl NewPayment {
    /// The `PENDING` payment (first attempt) this becomes when stored.
    pub fn into_payment(self) -> Payment {
        let now = now_millis();
        Payment {
            id: Uuid::now_v7(),
            booking_id: self.booking_id,
            user_id: self.user_id,
            user_email: self.user_email,
            user_email_as_of: self.user_email_as_of.trunc_subsecs(3),
            amount: self.amount,
            currency: self.currency,
            status: PaymentStatus::Pending,
            payment_method: None,
            transaction_id: None,
            failure_reason: None,
            attempts: 1,
            booking_status: BookingState::Pending,
            created_at: now,
            updated_at: now,
            metadata: self.metadata,
        }
    }
}

/// The current time at millisecond precision, which every store keeps exactly.
pub fn now_millis() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The result of one charge, recorded on a `PENDING` payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    /// The gateway captured the amount.
    Succeeded {
        /// The gateway's transaction id.
        transaction_id: String,
        /// The instrument charged.
        method: PaymentMethod,
    },
    /// The gateway declined.
    Declined {
        /// Why, in words a user may read.
        reason: String,
        /// The instrument tried.
        method: PaymentMethod,
    },
}

impl ChargeResult {
    /// The status a payment takes with this result.
    pub fn status(&self) -> PaymentStatus {
        match self {
            Self::Succeeded { .. } => PaymentStatus::Succeeded,
            Self::Declined { .. } => PaymentStatus::Failed,
        }
    }

    /// The instrument charged or tried.
    pub fn method(&self) -> &PaymentMethod {
        match self {
            Self::Succeeded { method, .. } | Self::Declined { method, .. } => method,
        }
    }

    /// The transaction id of a success.
    pub fn transaction_id(&self) -> Option<&str> {
        match self {
            Self::Succeeded { transaction_id, .. } => Some(transaction_id),
            Self::Declined { .. } => None,
        }
    }

    /// The reason of a decline.
    pub fn failure_reason(&self) -> Option<&str> {
        match self {
            Self::Succeeded { .. } => None,
            Self::Declined { reason, .. } => Some(reason),
        }
    }
}

//! Integration events: the envelope, the payload of every event, and the
//! JetStream streams they travel on.
//!
//! Each producing service owns one stream (`USERS`, `BOOKINGS`, `PAYMENTS`)
//! with subjects `<stream token>.<EventType>` (`users.UserRegistered`). An
//! [`EventNamespace`] prefixes stream names and subjects so that parallel test
//! runs sharing one NATS server never see each other's events; production uses
//! the empty namespace.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The JSON envelope every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique id; also the `Nats-Msg-Id` used for broker de-duplication and the inbox key.
    pub event_id: Uuid,
    /// The payload's type name (`BookingCreated`).
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: u32,
    /// When the producing transaction happened (RFC 3339).
    pub occurred_at: DateTime<Utc>,
    /// The correlation id of the request or event that caused this one.
    pub correlation_id: String,
    /// The payload.
    pub data: serde_json::Value,
}

/// Decoding an envelope's payload failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The envelope carries another event type.
    #[error("expected event type {expected}, got {actual}")]
    WrongType {
        /// The requested type.
        expected: &'static str,
        /// The envelope's type.
        actual: String,
    },
    /// The envelope carries a newer schema version than this service understands.
    #[error("{event_type} version {actual} is newer than the supported version {supported}")]
    UnsupportedVersion {
        /// The event type.
        event_type: &'static str,
        /// The envelope's version.
        actual: u32,
        /// The newest version this code reads.
        supported: u32,
    },
    /// The JSON does not match the payload type.
    #[error("invalid event JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Envelope {
    /// Wraps `event` in a new envelope with a fresh, time-ordered id.
    pub fn new<E: Event>(event: &E, correlation_id: impl Into<String>) -> Result<Self, EventError> {
        Ok(Self {
            event_id: Uuid::now_v7(),
            event_type: E::TYPE.to_string(),
            event_version: E::VERSION,
            occurred_at: Utc::now(),
            correlation_id: correlation_id.into(),
            data: serde_json::to_value(event)?,
        })
    }

    /// Whether this envelope carries an `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// The payload as an `E`; fails on another event type, a newer version
    /// than `E::VERSION`, or a schema mismatch.
    pub fn decode<E: Event>(&self) -> Result<E, EventError> {
        if !self.is::<E>() {
            return Err(EventError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        if self.event_version > E::VERSION {
            return Err(EventError::UnsupportedVersion {
                event_type: E::TYPE,
                actual: self.event_version,
                supported: E::VERSION,
            });
        }
        Ok(E::deserialize(&self.data)?)
    }

    /// Parses an envelope from a message payload.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EventError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The envelope as JSON bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, EventError> {
        Ok(serde_json::to_vec(self)?)
    }
}

/// An event payload: its type name, version and the stream its producer owns.
pub trait Event: Serialize + DeserializeOwned + Send + Sync {
    /// The `eventType` (and last subject token).
    const TYPE: &'static str;
    /// The `eventVersion`.
    const VERSION: u32 = 1;
    /// The stream of the producing service.
    const STREAM: StreamKind;
}

/// The stream of each producing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StreamKind {
    /// user-service's stream.
    Users,
    /// booking-service's stream.
    Bookings,
    /// payment-service's stream.
    Payments,
}

impl StreamKind {
    /// The stream name without namespace (`USERS`).
    pub fn base_name(self) -> &'static str {
        match self {
            Self::Users => "USERS",
            Self::Bookings => "BOOKINGS",
            Self::Payments => "PAYMENTS",
        }
    }

    /// The first subject token without namespace (`users`); also the outbox's `stream` column.
    pub fn token(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Bookings => "bookings",
            Self::Payments => "payments",
        }
    }

    /// The kind whose [`token`](Self::token) is `token`.
    pub fn from_token(token: &str) -> Option<Self> {
        [Self::Users, Self::Bookings, Self::Payments]
            .into_iter()
            .find(|kind| kind.token() == token)
    }
}

/// A namespace for stream names and subjects; empty in production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventNamespace {
    prefix: Option<String>,
}

/// An invalid namespace prefix.
#[derive(Debug, thiserror::Error)]
#[error("event namespace must be 1-32 characters of [A-Za-z0-9_-], got {length} characters")]
pub struct InvalidNamespace {
    length: usize,
}

impl EventNamespace {
    /// The production namespace: `USERS`, `users.<EventType>`.
    pub fn root() -> Self {
        Self::default()
    }

    /// A prefixed namespace: `<PREFIX>_USERS`, `<prefix>.users.<EventType>`.
    pub fn prefixed(prefix: impl Into<String>) -> Result<Self, InvalidNamespace> {
        let prefix = prefix.into();
        let valid = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(InvalidNamespace {
                length: prefix.chars().count(),
            });
        }
        Ok(Self {
            prefix: Some(prefix),
        })
    }

    /// From the optional `EVENT_NAMESPACE` setting.
    pub fn from_setting(value: Option<String>) -> Result<Self, InvalidNamespace> {
        match value {
            None => Ok(Self::root()),
            Some(prefix) => Self::prefixed(prefix),
        }
    }

    /// From the optional `EVENT_NAMESPACE` variable of `env`.
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        Self::from_setting(env.optional("EVENT_NAMESPACE")).map_err(|e| {
            crate::config::ConfigError::Invalid {
                name: "EVENT_NAMESPACE".into(),
                reason: e.to_string(),
            }
        })
    }

    /// The JetStream stream name of `kind`.
    pub fn stream_name(&self, kind: StreamKind) -> String {
        match &self.prefix {
            None => kind.base_name().to_string(),
            Some(prefix) => format!("{}_{}", prefix.to_ascii_uppercase(), kind.base_name()),
        }
    }

    fn subject_root(&self, kind: StreamKind) -> String {
        match &self.prefix {
            None => kind.token().to_string(),
            Some(prefix) => format!("{prefix}.{}", kind.token()),
        }
    }

    /// The subject of events of `event_type` on `kind`'s stream.
    pub fn subject(&self, kind: StreamKind, event_type: &str) -> String {
        format!("{}.{event_type}", self.subject_root(kind))
    }

    /// The subject of `E`.
    pub fn subject_of<E: Event>(&self) -> String {
        self.subject(E::STREAM, E::TYPE)
    }

    /// The filter matching every event (not dead letters) of `kind`.
    pub fn events_filter(&self, kind: StreamKind) -> String {
        format!("{}.*", self.subject_root(kind))
    }

    /// The subjects the stream of `kind` captures (events and their dead letters).
    pub fn stream_subjects(&self, kind: StreamKind) -> String {
        format!("{}.>", self.subject_root(kind))
    }

    /// The stream configuration of `kind`.
    pub fn stream_config(&self, kind: StreamKind) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.stream_name(kind),
            subjects: vec![self.stream_subjects(kind)],
            description: Some(format!("{} events", kind.token())),
            storage: jetstream::stream::StorageType::File,
            retention: jetstream::stream::RetentionPolicy::Limits,
            max_age: STREAM_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        }
    }

    /// Creates the stream of `kind` if absent (the producer calls this at start-up).
    pub async fn ensure_stream(
        &self,
        jetstream: &jetstream::Context,
        kind: StreamKind,
    ) -> Result<jetstream::stream::Stream, jetstream::context::CreateStreamError> {
        jetstream
            .get_or_create_stream(self.stream_config(kind))
            .await
    }
}

/// How long a stream keeps a message: no redelivery is older than this.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long JetStream remembers a `Nats-Msg-Id` to drop duplicates.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The dead-letter subject of an event subject.
pub fn dead_letter_subject(subject: &str) -> String {
    format!("{subject}.dlq")
}

macro_rules! event {
    ($name:ident, $stream:ident) => {
        impl Event for $name {
            const TYPE: &'static str = stringify!($name);
            const STREAM: StreamKind = StreamKind::$stream;
        }
    };
}

/// A user signed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    /// The new user's id.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their full name.
    pub full_name: String,
}
event!(UserRegistered, Users);

/// A user changed their email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEmailChanged {
    /// The user.
    pub user_id: Uuid,
    /// The email before the change.
    pub old_email: String,
    /// The email after the change.
    pub new_email: String,
}
event!(UserEmailChanged, Users);

/// A booking was created (status `PENDING`); payment-service charges it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingCreated {
    /// The booking.
    pub booking_id: Uuid,
    /// Who booked.
    pub user_id: Uuid,
    /// booking-service's copy of the user's email (payment-service keeps it on the payment).
    pub user_email: String,
    /// What was booked.
    pub event_name: String,
    /// How many tickets.
    pub ticket_count: i32,
    /// Amount to charge.
    pub total_amount: Decimal,
    /// ISO 4217 currency.
    pub currency: String,
}
event!(BookingCreated, Bookings);

/// A booking was confirmed after its payment succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmed {
    /// The booking.
    pub booking_id: Uuid,
    /// The payment that paid it.
    pub payment_id: Uuid,
}
event!(BookingConfirmed, Bookings);

/// A booking was cancelled (by its owner or because its payment failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingCancelled {
    /// The booking.
    pub booking_id: Uuid,
    /// Why.
    pub reason: String,
}
event!(BookingCancelled, Bookings);

/// A payment succeeded for a booking that was already cancelled: give the money back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequested {
    /// The payment to refund.
    pub payment_id: Uuid,
    /// The cancelled booking.
    pub booking_id: Uuid,
}
event!(RefundRequested, Bookings);

/// A booking's payment succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceeded {
    /// The payment.
    pub payment_id: Uuid,
    /// The booking paid for.
    pub booking_id: Uuid,
    /// Amount charged.
    pub amount: Decimal,
    /// ISO 4217 currency.
    pub currency: String,
    /// The gateway's transaction id.
    pub transaction_id: String,
}
event!(PaymentSucceeded, Payments);

/// A booking's payment failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    /// The payment.
    pub payment_id: Uuid,
    /// The booking.
    pub booking_id: Uuid,
    /// Amount that was declined.
    pub amount: Decimal,
    /// ISO 4217 currency.
    pub currency: String,
    /// Why it failed.
    pub reason: String,
}
event!(PaymentFailed, Payments);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_camel_case_with_rfc3339_time() {
        let event = UserRegistered {
            user_id: Uuid::nil(),
            email: "a@b.c".into(),
            full_name: "A B".into(),
        };
        let envelope = Envelope::new(&event, "corr-1").unwrap();
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["eventType"], "UserRegistered");
        assert_eq!(json["eventVersion"], 1);
        assert_eq!(json["correlationId"], "corr-1");
        assert_eq!(json["data"]["fullName"], "A B");
        let occurred = json["occurredAt"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(occurred).is_ok(), "{occurred}");
        assert_eq!(envelope.decode::<UserRegistered>().unwrap(), event);
    }

    #[test]
    fn decoding_as_another_type_fails() {
        let envelope = Envelope::new(
            &RefundRequested {
                payment_id: Uuid::nil(),
                booking_id: Uuid::nil(),
            },
            "c",
        )
        .unwrap();
        assert!(matches!(
            envelope.decode::<BookingCancelled>(),
            Err(EventError::WrongType { .. })
        ));
    }

    #[test]
    fn newer_event_version_is_refused_rather_than_misread() {
        let mut envelope = Envelope::new(
            &BookingConfirmed {
                booking_id: Uuid::nil(),
                payment_id: Uuid::nil(),
            },
            "c",
        )
        .unwrap();
        envelope.event_version = 2;
        assert!(matches!(
            envelope.decode::<BookingConfirmed>(),
            Err(EventError::UnsupportedVersion { actual: 2, .. })
        ));
    }

    #[test]
    fn namespace_prefixes_streams_and_subjects() {
        let root = EventNamespace::root();
        assert_eq!(root.stream_name(StreamKind::Users), "USERS");
        assert_eq!(root.subject_of::<UserRegistered>(), "users.UserRegistered");
        assert_eq!(root.events_filter(StreamKind::Payments), "payments.*");
        let test = EventNamespace::prefixed("t1a2").unwrap();
        assert_eq!(test.stream_name(StreamKind::Bookings), "T1A2_BOOKINGS");
        assert_eq!(
            test.subject_of::<RefundRequested>(),
            "t1a2.bookings.RefundRequested"
        );
        assert_eq!(
            test.stream_subjects(StreamKind::Bookings),
            "t1a2.bookings.>"
        );
        assert_eq!(
            dead_letter_subject(&test.subject_of::<BookingCreated>()),
            "t1a2.bookings.BookingCreated.dlq"
        );
    }

    #[test]
    fn namespace_from_env_names_the_variable_when_invalid() {
        let env = crate::config::Env::from_pairs([("EVENT_NAMESPACE", "a.b")]);
        let error = EventNamespace::from_env(&env).unwrap_err();
        assert!(error.to_string().starts_with("EVENT_NAMESPACE is invalid"));
        let unset = crate::config::Env::from_pairs(Vec::<(String, String)>::new());
        assert_eq!(
            EventNamespace::from_env(&unset).unwrap(),
            EventNamespace::root()
        );
    }

    #[test]
    fn namespace_rejects_subject_wildcards() {
        assert!(EventNamespace::prefixed("a.b").is_err());
        assert!(EventNamespace::prefixed("a*").is_err());
        assert!(EventNamespace::prefixed("").is_err());
    }
}

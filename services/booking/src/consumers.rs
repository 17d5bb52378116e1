//! booking-service's reactions to other services' events, each applied on the consumer's
//! transaction together with its inbox mark (see `silo_kit::inbox::postgres`).

use crate::booking::{PaymentOutcome, Reaction};
use crate::repository::{BookingRepository, KnownUser, RepositoryError};
use crate::saga_run::{OutcomeEvent, apply_payment_outcomes};
use silo_kit::consumer::HandlerError;
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{
    Envelope, Event, PaymentFailed, PaymentSucceeded, UserEmailChanged, UserRegistered,
};
use silo_kit::inbox::postgres::PgEventHandler;
use silo_kit::outbox::OutboxError;
use sqlx::PgConnection;

/// The durable consumer name of booking-service on every stream it reads.
pub const CONSUMER_NAME: &str = "booking-service";

fn store_failure(error: RepositoryError) -> HandlerError {
    match error {
        RepositoryError::Corrupt(_) => HandlerError::permanent(error),
        // Connection-level failures are an outage (retried, never dead-lettered).
        RepositoryError::Postgres(sql) | RepositoryError::Outbox(OutboxError::Postgres(sql)) => {
            HandlerError::from(sql)
        }
        other => HandlerError::transient(other),
    }
}

fn correlation_of(envelope: &Envelope) -> CorrelationId {
    CorrelationId::from_header_or_generate(Some(&envelope.correlation_id))
}

/// The saga: `PaymentSucceeded` / `PaymentFailed` from payment-service.
#[derive(Debug, Clone, Default)]
pub struct PaymentEvents;

/// The payment outcome an event carries.
fn outcome_event(envelope: &Envelope) -> Result<OutcomeEvent, HandlerError> {
    let (booking_id, outcome) = if envelope.is::<PaymentSucceeded>() {
        let event: PaymentSucceeded = envelope.decode()?;
        (
            event.booking_id,
            PaymentOutcome::Succeeded {
                payment_id: event.payment_id,
            },
        )
    } else {
        let event: PaymentFailed = envelope.decode()?;
        (
            event.booking_id,
            PaymentOutcome::Failed {
                payment_id: event.payment_id,
                reason: event.reason,
            },
        )
    };
    Ok(OutcomeEvent {
        event_id: envelope.event_id,
        booking_id,
        outcome,
        correlation_id: correlation_of(envelope),
    })
}

fn warn_of_refund(event: &OutcomeEvent, reaction: &Reaction) {
    if *reaction == Reaction::RequestRefund {
        tracing::warn!(booking_id = %event.booking_id, payment_id = %event.outcome.payment_id(), "payment succeeded for a cancelled booking; refund requested");
    }
}

impl PgEventHandler for PaymentEvents {
    fn handles(&self, event_type: &str) -> bool {
        event_type == PaymentSucceeded::TYPE || event_type == PaymentFailed::TYPE
    }

    async fn apply(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let event = outcome_event(envelope)?;
        let reaction = BookingRepository::apply_payment_outcome(
            tx,
            event.event_id,
            event.booking_id,
            &event.outcome,
            &event.correlation_id,
        )
        .await
        .map_err(store_failure)?;
        warn_of_refund(&event, &reaction);
        Ok(())
    }

    /// A run goes through [`apply_payment_outcomes`]: a few statements for the whole run.
    async fn apply_run(
        &self,
        tx: &mut PgConnection,
        envelopes: &[&Envelope],
    ) -> Result<(), HandlerError> {
        let run = envelopes
            .iter()
            .map(|envelope| outcome_event(envelope))
            .collect::<Result<Vec<_>, _>>()?;
        let reactions = apply_payment_outcomes(tx, &run)
            .await
            .map_err(store_failure)?;
        for (event, reaction) in run.iter().zip(&reactions) {
            warn_of_refund(event, reaction);
        }
        Ok(())
    }
}

/// The known-users replica: `UserRegistered` / `UserEmailChanged` from user-service.
#[derive(Debug, Clone, Default)]
pub struct UserEvents;

impl PgEventHandler for UserEvents {
    fn handles(&self, event_type: &str) -> bool {
        event_type == UserRegistered::TYPE || event_type == UserEmailChanged::TYPE
    }

    async fn apply(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if envelope.is::<UserRegistered>() {
            let event: UserRegistered = envelope.decode()?;
            let user = KnownUser {
                user_id: event.user_id,
                email: event.email,
                full_name: Some(event.full_name),
            };
            BookingRepository::remember_user(tx, &user, envelope.occurred_at)
                .await
                .map_err(store_failure)
        } else {
            let event: UserEmailChanged = envelope.decode()?;
            BookingRepository::change_user_email(
                tx,
                event.user_id,
                &event.new_email,
                envelope.occurred_at,
            )
            .await
            .map(|_| ())
            .map_err(store_failure)
        }
    }
}

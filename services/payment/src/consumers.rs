//! payment-service's event consumers: booking events drive charges and refunds, user events
//! refresh the email copies. The store writes each effect with its inbox mark.

use crate::charging::{Charging, ChargingError};
use crate::store::{DeadLetter, Effect, PaymentStore, StoreError};
use silo_kit::consumer::{DeadLetterSink, HandlerError, MessageHandler, Processed};
use silo_kit::events::{
    BookingCancelled, BookingConfirmed, BookingCreated, Envelope, Event, RefundRequested,
    UserEmailChanged,
};
use std::sync::Arc;

/// The durable consumer name of payment-service on every stream it reads.
pub const CONSUMER_NAME: &str = "payment-service";

fn processed<T>(effect: Effect<T>) -> Processed {
    match effect {
        Effect::Applied(_) => Processed::Applied,
        Effect::Duplicate => Processed::Duplicate,
    }
}

fn failure(error: ChargingError) -> HandlerError {
    match error {
        ChargingError::Malformed(_) | ChargingError::Store(StoreError::Corrupt(_)) => {
            HandlerError::permanent(error)
        }
        // An outage is not the event's fault: retried until the dependency is back.
        ChargingError::Gateway(_) => HandlerError::unavailable(error),
        ChargingError::Store(StoreError::Postgres(sql)) => HandlerError::from(sql),
        ChargingError::Store(StoreError::Mongo(mongo)) if is_outage(&mongo) => {
            HandlerError::unavailable(mongo)
        }
        other => HandlerError::transient(other),
    }
}

/// Whether MongoDB could not be reached at all (as opposed to refusing a statement).
fn is_outage(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        mongodb::error::ErrorKind::Io(_)
            | mongodb::error::ErrorKind::ServerSelection { .. }
            | mongodb::error::ErrorKind::ConnectionPoolCleared { .. }
    )
}

/// `BookingCreated` → charge; `RefundRequested` → refund; `BookingConfirmed`/`BookingCancelled`
/// → remember the booking's fate.
#[derive(Clone)]
pub struct BookingEvents {
    charging: Charging,
}

impl BookingEvents {
    /// The handler over `charging`.
    pub fn new(charging: Charging) -> Self {
        Self { charging }
    }
}

/// Whether the event is a decision on a booking (handled by [`Charging::on_booking_decided`]).
fn is_decision(envelope: &Envelope) -> bool {
    matches!(
        envelope.event_type.as_str(),
        BookingConfirmed::TYPE | BookingCancelled::TYPE
    )
}

impl BookingEvents {
    /// Records the decisions at `indexes` of `envelopes` together, and their outcomes.
    async fn decide(
        &self,
        envelopes: &[Envelope],
        indexes: &mut Vec<usize>,
        outcomes: &mut [Option<Processed>],
    ) -> Result<(), HandlerError> {
        if indexes.is_empty() {
            return Ok(());
        }
        let run: Vec<&Envelope> = indexes.iter().map(|&i| &envelopes[i]).collect();
        let effects = self
            .charging
            .on_booking_decided_batch(&run, CONSUMER_NAME)
            .await
            .map_err(failure)?;
        for (index, effect) in indexes.drain(..).zip(effects) {
            outcomes[index] = Some(processed(effect));
        }
        Ok(())
    }
}

impl MessageHandler for BookingEvents {
    const BATCHES: bool = true;

    /// The run's `BookingCreated` events first, together (nothing else in a run can concern
    /// a booking before it is created); then the rest in order, consecutive decisions
    /// together and other events one by one.
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Vec<Processed>, HandlerError> {
        let mut outcomes: Vec<Option<Processed>> = vec![None; envelopes.len()];
        let created: Vec<usize> = (0..envelopes.len())
            .filter(|&i| envelopes[i].event_type == BookingCreated::TYPE)
            .collect();
        if !created.is_empty() {
            let run: Vec<&Envelope> = created.iter().map(|&i| &envelopes[i]).collect();
            let effects = self
                .charging
                .on_booking_created_batch(&run, CONSUMER_NAME)
                .await
                .map_err(failure)?;
            for (index, effect) in created.into_iter().zip(effects) {
                outcomes[index] = Some(processed(effect));
            }
        }
        let mut decisions = Vec::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            if is_decision(envelope) {
                decisions.push(index);
                continue;
            }
            self.decide(envelopes, &mut decisions, &mut outcomes)
                .await?;
            outcomes[index] = Some(self.handle(envelope).await?);
        }
        self.decide(envelopes, &mut decisions, &mut outcomes)
            .await?;
        outcomes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                HandlerError::transient(anyhow::anyhow!("an event of the run got no outcome"))
            })
    }

    async fn handle(&self, envelope: &Envelope) -> Result<Processed, HandlerError> {
        let charging = &self.charging;
        let result = match envelope.event_type.as_str() {
            BookingCreated::TYPE => charging
                .on_booking_created(envelope, CONSUMER_NAME)
                .await
                .map(processed),
            RefundRequested::TYPE => charging
                .on_refund_requested(envelope, CONSUMER_NAME)
                .await
                .map(processed),
            BookingConfirmed::TYPE | BookingCancelled::TYPE => charging
                .on_booking_decided(envelope, CONSUMER_NAME)
                .await
                .map(processed),
            _ => return Ok(Processed::Ignored),
        };
        result.map_err(failure)
    }
}

/// `UserEmailChanged` → refresh the email on the user's payments.
#[derive(Clone)]
pub struct UserEvents {
    charging: Charging,
}

impl UserEvents {
    /// The handler over `charging`.
    pub fn new(charging: Charging) -> Self {
        Self { charging }
    }
}

impl MessageHandler for UserEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<Processed, HandlerError> {
        if envelope.event_type != UserEmailChanged::TYPE {
            return Ok(Processed::Ignored);
        }
        self.charging
            .on_user_email_changed(envelope, CONSUMER_NAME)
            .await
            .map(processed)
            .map_err(failure)
    }
}

/// Dead letters go to the payment store (table or collection).
#[derive(Clone)]
pub struct StoreDeadLetters(pub Arc<dyn PaymentStore>);

impl DeadLetterSink for StoreDeadLetters {
    async fn record(&self, letter: &DeadLetter) -> Result<(), anyhow::Error> {
        Ok(self.0.record_dead_letter(letter).await?)
    }
}

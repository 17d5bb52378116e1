//! What payment-service does: charge a booking once, retry a failed charge, refund, and keep
//! its copies of other services' data fresh.

use crate::gateway::{ChargeRequest, GatewayError, PaymentGateway};
use crate::payment::{BookingState, ChargeResult, NewPayment, Payment, PaymentStatus};
use crate::store::{CompleteCharge, Effect, InboxMark, OutboxEntry, PaymentStore, StoreError};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{
    BookingCancelled, BookingConfirmed, BookingCreated, Envelope, Event, EventError, PaymentFailed,
    PaymentSucceeded, RefundRequested, UserEmailChanged,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Most gateway calls one batch of events has in flight at once.
const BATCH_CHARGES_IN_FLIGHT: usize = 8;

/// Why handling an event or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChargingError {
    /// The event cannot be decoded: retrying will not help.
    #[error("malformed event: {0}")]
    Malformed(#[from] EventError),
    /// The store failed (may be transient).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The gateway gave no answer (transient).
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
}

impl ChargingError {
    /// Whether redelivering the event may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Malformed(_))
    }
}

/// The payment logic over a store and a gateway.
#[derive(Clone)]
pub struct Charging {
    store: Arc<dyn PaymentStore>,
    gateway: Arc<dyn PaymentGateway>,
}

/// What one recovery pass did (see [`Charging::settle_abandoned`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Abandoned attempts taken over.
    pub claimed: usize,
    /// Of those, the ones whose outcome this pass recorded.
    pub settled: usize,
}

/// Wraps `event` for the outbox.
pub fn outbox_entry<E: Event>(event: &E, correlation_id: &str) -> Result<OutboxEntry, EventError> {
    Ok(OutboxEntry {
        stream: E::STREAM.token().to_string(),
        envelope: Envelope::new(event, correlation_id)?,
    })
}

impl Charging {
    /// The logic over these parts.
    pub fn new(store: Arc<dyn PaymentStore>, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { store, gateway }
    }

    /// The store (API reads).
    pub fn store(&self) -> &Arc<dyn PaymentStore> {
        &self.store
    }

    /// The event announcing a charge result.
    fn result_event(
        &self,
        payment: &Payment,
        result: &ChargeResult,
        correlation_id: &str,
    ) -> Result<OutboxEntry, EventError> {
        match result {
            ChargeResult::Succeeded { transaction_id, .. } => outbox_entry(
                &PaymentSucceeded {
                    payment_id: payment.id,
                    booking_id: payment.booking_id,
                    amount: payment.amount,
                    currency: payment.currency.clone(),
                    transaction_id: transaction_id.clone(),
                },
                correlation_id,
            ),
            ChargeResult::Declined { reason, .. } => outbox_entry(
                &PaymentFailed {
                    payment_id: payment.id,
                    booking_id: payment.booking_id,
                    amount: payment.amount,
                    currency: payment.currency.clone(),
                    reason: reason.clone(),
                },
                correlation_id,
            ),
        }
    }

    async fn charge(&self, payment: &Payment) -> Result<ChargeResult, GatewayError> {
        self.gateway
            .charge(&ChargeRequest {
                idempotency_key: idempotency_key(payment),
                amount: payment.amount,
                currency: payment.currency.clone(),
            })
            .await
    }

    /// `BookingCreated`: opens the booking's one payment, charges it, and records the result
    /// with its event and the inbox mark.
    pub async fn on_booking_created(
        &self,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<Effect<Payment>, ChargingError> {
        let inbox = mark(consumer, envelope);
        if self.store.was_handled(&inbox).await? {
            return Ok(Effect::Duplicate);
        }
        let booking: BookingCreated = envelope.decode()?;
        let payment = self.store.open(new_payment(envelope, booking)).await?;
        if payment.status != PaymentStatus::Pending {
            // Charged already (the same booking announced twice under two event ids).
            self.store.mark_handled(&inbox).await?;
            return Ok(Effect::Duplicate);
        }
        let result = self.charge(&payment).await?;
        let event = self.result_event(&payment, &result, &envelope.correlation_id)?;
        Ok(self
            .store
            .complete_charge(payment.id, payment.attempts, &result, &event, Some(&inbox))
            .await?)
    }

    /// A run of `BookingCreated` events delivered together, with the outcome each would have
    /// had from [`Self::on_booking_created`] in this order: the store is asked once which
    /// were handled already, opens the payments in one go, the gateway charges each new
    /// payment once (a few at a time), and the store records all results with their events
    /// and inbox marks together. An error means the run must be handled event by event (what
    /// was charged is charged again under the same idempotency key, which the gateway answers
    /// without a second capture).
    pub async fn on_booking_created_batch(
        &self,
        envelopes: &[&Envelope],
        consumer: &str,
    ) -> Result<Vec<Effect<Payment>>, ChargingError> {
        let marks: Vec<InboxMark> = envelopes.iter().map(|e| mark(consumer, e)).collect();
        let handled = self.store.handled_among(&marks).await?;
        // Whatever is not applied below is a duplicate: handled before, a repeat of an event
        // id earlier in the run (it finds the mark its first occurrence leaves), or a booking
        // whose payment is no longer PENDING.
        let mut outcomes = vec![Effect::Duplicate; envelopes.len()];
        let mut seen = HashSet::new();
        let mut todo = Vec::new();
        let mut opening = Vec::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            if !handled.contains(&envelope.event_id) && seen.insert(envelope.event_id) {
                opening.push(new_payment(envelope, envelope.decode()?));
                todo.push(index);
            }
        }
        let payments = self.store.open_many(opening).await?;
        // Each PENDING payment is charged once, for the first event naming its booking.
        let mut to_charge = Vec::new();
        let mut charging = HashSet::new();
        for (index, payment) in todo.iter().zip(&payments) {
            if payment.status == PaymentStatus::Pending && charging.insert(payment.id) {
                to_charge.push((payment.clone(), envelopes[*index].correlation_id.clone()));
            }
        }
        let charged = self.charge_each(to_charge).await?;
        let mut items = Vec::new();
        let mut completing = Vec::new();
        for (index, payment) in todo.iter().zip(&payments) {
            let inbox = marks[*index].clone();
            match charged.get(&payment.id) {
                // A later event for a booking charged in this run records the same result:
                // the store finds the attempt completed, keeps its mark and publishes nothing.
                Some((result, event)) => {
                    items.push(CompleteCharge {
                        payment_id: payment.id,
                        attempt: payment.attempts,
                        result: result.clone(),
                        event: event.clone(),
                        inbox: Some(inbox),
                    });
                    completing.push(*index);
                }
                // Charged already (the same booking announced twice under two event ids).
                None => {
                    self.store.mark_handled(&inbox).await?;
                }
            }
        }
        let completed = self.store.complete_charges(&items).await?;
        for (index, effect) in completing.into_iter().zip(completed) {
            outcomes[index] = effect;
        }
        Ok(outcomes)
    }

    /// Charges each payment (a few at a time), and makes the event announcing each result
    /// with the correlation id paired with its payment.
    async fn charge_each(
        &self,
        payments: Vec<(Payment, String)>,
    ) -> Result<HashMap<Uuid, (ChargeResult, OutboxEntry)>, ChargingError> {
        // Owned payments: a stream of borrowed ones makes the future not provably `Send`.
        futures::stream::iter(payments)
            .map(|(payment, correlation_id)| async move {
                let result = self.charge(&payment).await?;
                let event = self.result_event(&payment, &result, &correlation_id)?;
                Ok::<_, ChargingError>((payment.id, (result, event)))
            })
            .buffered(BATCH_CHARGES_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Charges a `FAILED` payment of a still-`PENDING` booking once more.
    pub async fn retry(
        &self,
        payment_id: Uuid,
        correlation_id: &str,
    ) -> Result<Payment, ChargingError> {
        let payment = self.store.start_retry(payment_id).await?;
        let result = match self.charge(&payment).await {
            Ok(result) => result,
            // Leave no payment stuck in PENDING: an unreachable gateway is a failed attempt.
            Err(GatewayError::Unavailable(why)) => ChargeResult::Declined {
                reason: format!("payment gateway unavailable: {why}"),
                method: payment
                    .payment_method
                    .clone()
                    .unwrap_or_else(unknown_method),
            },
        };
        let event = self.result_event(&payment, &result, correlation_id)?;
        match self
            .store
            .complete_charge(payment.id, payment.attempts, &result, &event, None)
            .await?
        {
            Effect::Applied(done) => Ok(done),
            Effect::Duplicate => Err(ChargingError::Store(StoreError::Conflict(
                "the payment changed while it was retried".into(),
            ))),
        }
    }

    /// Takes over up to `limit` `PENDING` payments whose attempt was claimed before
    /// `abandoned_before` (the claimer crashed) and settles each as its claimer would have:
    /// the same charge request again (same idempotency key: no second capture), then the
    /// outcome with its event in one store transaction. An attempt the gateway cannot answer
    /// now keeps this pass's claim and is taken over again once that claim is abandoned too.
    pub async fn settle_abandoned(
        &self,
        abandoned_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Recovered, ChargingError> {
        let claimed = self.store.claim_abandoned(abandoned_before, limit).await?;
        let mut recovered = Recovered {
            claimed: claimed.len(),
            settled: 0,
        };
        for payment in &claimed {
            let result = match self.charge(payment).await {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(payment_id = %payment.id, error = %error, "abandoned charge attempt left for a later pass");
                    continue;
                }
            };
            // The request that started the attempt is gone; the saga's id still ties the
            // event to the booking that caused it.
            let correlation_id = match payment.metadata["correlationId"].as_str() {
                Some(id) => id.to_string(),
                None => CorrelationId::generate().as_str().to_string(),
            };
            let event = self.result_event(payment, &result, &correlation_id)?;
            let outcome = self
                .store
                .complete_charge(payment.id, payment.attempts, &result, &event, None)
                .await?;
            if matches!(outcome, Effect::Applied(_)) {
                recovered.settled += 1;
            }
        }
        Ok(recovered)
    }

    /// `RefundRequested`: gives back a succeeded payment of a cancelled booking.
    pub async fn on_refund_requested(
        &self,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<Effect<Option<Payment>>, ChargingError> {
        let inbox = mark(consumer, envelope);
        if self.store.was_handled(&inbox).await? {
            return Ok(Effect::Duplicate);
        }
        let refund: RefundRequested = envelope.decode()?;
        if let Some(payment) = self.store.find_by_booking(refund.booking_id).await?
            && payment.status == PaymentStatus::Succeeded
            && let Some(transaction_id) = &payment.transaction_id
        {
            self.gateway.refund(transaction_id).await?;
        }
        Ok(self.store.refund(refund.booking_id, &inbox).await?)
    }

    /// `BookingConfirmed` / `BookingCancelled`: records what became of the booking (a
    /// cancelled booking's failed payment can no longer be retried).
    pub async fn on_booking_decided(
        &self,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<Effect<()>, ChargingError> {
        let inbox = mark(consumer, envelope);
        let (booking_id, state) = decision(envelope)?;
        Ok(self
            .store
            .set_booking_state(booking_id, state, &inbox)
            .await?)
    }

    /// A run of `BookingConfirmed` / `BookingCancelled` events delivered together, with the
    /// outcome each would have had from [`Self::on_booking_decided`] in this order, written
    /// by the store together.
    pub async fn on_booking_decided_batch(
        &self,
        envelopes: &[&Envelope],
        consumer: &str,
    ) -> Result<Vec<Effect<()>>, ChargingError> {
        let items = envelopes
            .iter()
            .map(|envelope| {
                let (booking_id, state) = decision(envelope)?;
                Ok((booking_id, state, mark(consumer, envelope)))
            })
            .collect::<Result<Vec<_>, EventError>>()?;
        Ok(self.store.set_booking_states(&items).await?)
    }

    /// `UserEmailChanged`: refreshes the email copy on the user's payments.
    pub async fn on_user_email_changed(
        &self,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<Effect<u64>, ChargingError> {
        let inbox = mark(consumer, envelope);
        let changed: UserEmailChanged = envelope.decode()?;
        Ok(self
            .store
            .change_user_email(
                changed.user_id,
                &changed.new_email,
                envelope.occurred_at,
                &inbox,
            )
            .await?)
    }
}

/// Names the attempt by booking (stable even if the payment row had to be opened again), so
/// a redelivered event repeats the same charge request and the gateway answers it without
/// taking the money twice.
pub fn idempotency_key(payment: &Payment) -> String {
    format!("{}:{}", payment.booking_id, payment.attempts)
}

/// The payment a `BookingCreated` opens.
fn new_payment(envelope: &Envelope, booking: BookingCreated) -> NewPayment {
    NewPayment {
        booking_id: booking.booking_id,
        user_id: booking.user_id,
        user_email: Some(booking.user_email),
        user_email_as_of: envelope.occurred_at,
        amount: booking.total_amount,
        currency: booking.currency,
        metadata: serde_json::json!({
            "correlationId": envelope.correlation_id,
            "bookingCreatedEventId": envelope.event_id,
            "eventName": booking.event_name,
            "ticketCount": booking.ticket_count,
        }),
    }
}

/// The booking and what became of it, from a `BookingConfirmed` or `BookingCancelled`.
fn decision(envelope: &Envelope) -> Result<(Uuid, BookingState), EventError> {
    if envelope.is::<BookingConfirmed>() {
        let event: BookingConfirmed = envelope.decode()?;
        Ok((event.booking_id, BookingState::Confirmed))
    } else {
        let event: BookingCancelled = envelope.decode()?;
        Ok((event.booking_id, BookingState::Cancelled))
    }
}

fn mark(consumer: &str, envelope: &Envelope) -> InboxMark {
    InboxMark {
        consumer: consumer.to_string(),
        event_id: envelope.event_id,
        event_type: envelope.event_type.clone(),
    }
}

fn unknown_method() -> crate::payment::PaymentMethod {
    crate::payment::PaymentMethod {
        kind: "Unknown".into(),
        last4: String::new(),
        brand: String::new(),
    }
}

//! The saga step for a run of payment outcomes delivered together: the usual case — each
//! outcome finds its booking still `PENDING` — is written with three multi-row statements for
//! the whole run (move the bookings, write their events, record the outcomes). Outcomes whose
//! booking is not `PENDING`, or that share their booking with another outcome of the run, take
//! the one-at-a-time path of [`BookingRepository::apply_payment_outcome`] afterwards, on the
//! same transaction.

use crate::booking::{BookingStatus, PaymentOutcome, Reaction, react};
use crate::repository::{BookingRepository, RepositoryError};
use chrono::{DateTime, SubsecRound, Utc};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{BookingCancelled, BookingConfirmed, Envelope, Event};
use silo_kit::outbox::postgres::enqueue_all;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One payment outcome of a run, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeEvent {
    /// The outcome event's id (the audit record's key).
    pub event_id: Uuid,
    /// The booking it is about.
    pub booking_id: Uuid,
    /// What happened to the payment.
    pub outcome: PaymentOutcome,
    /// Carried into the resulting event.
    pub correlation_id: CorrelationId,
}

/// How the run splits: outcomes the multi-row path moves if their booking is `PENDING`, and
/// the rest, which must go one at a time in order (several outcomes for one booking).
fn split(run: &[OutcomeEvent]) -> (Vec<&OutcomeEvent>, Vec<&OutcomeEvent>) {
    let mut per_booking: HashMap<Uuid, usize> = HashMap::new();
    for event in run {
        *per_booking.entry(event.booking_id).or_default() += 1;
    }
    run.iter()
        .partition(|event| per_booking.get(&event.booking_id) == Some(&1))
}

/// The event announcing `reaction` for `event`, when the reaction is a move.
fn announcement(
    event: &OutcomeEvent,
    reaction: &Reaction,
) -> Result<Option<Envelope>, RepositoryError> {
    let payment_id = event.outcome.payment_id();
    let envelope = match reaction {
        Reaction::Confirm => Envelope::new(
            &BookingConfirmed {
                booking_id: event.booking_id,
                payment_id,
            },
            event.correlation_id.as_str(),
        ),
        Reaction::Cancel(reason) => Envelope::new(
            &BookingCancelled {
                booking_id: event.booking_id,
                reason: reason.clone(),
            },
            event.correlation_id.as_str(),
        ),
        Reaction::RequestRefund | Reaction::Record => return Ok(None),
    };
    let envelope = envelope.map_err(|e| RepositoryError::Outbox(e.into()))?;
    Ok(Some(envelope))
}

/// Applies a run of payment outcomes on the consumer's transaction (which holds their inbox
/// marks); returns the reaction to each, in order.
pub async fn apply_payment_outcomes(
    conn: &mut PgConnection,
    run: &[OutcomeEvent],
) -> Result<Vec<Reaction>, RepositoryError> {
    // Outcomes sharing a booking are left to the one-at-a-time pass below.
    let (together, _) = split(run);
    let now: DateTime<Utc> = Utc::now().trunc_subsecs(6);
    let reactions: Vec<Reaction> = together
        .iter()
        .map(|event| react(BookingStatus::Pending, &event.outcome))
        .collect();
    let moved: HashSet<Uuid> = {
        let ids: Vec<Uuid> = together.iter().map(|e| e.booking_id).collect();
        let payments: Vec<Uuid> = together.iter().map(|e| e.outcome.payment_id()).collect();
        let statuses: Vec<&str> = reactions
            .iter()
            .map(|r| match r {
                Reaction::Cancel(_) => BookingStatus::Cancelled.as_str(),
                _ => BookingStatus::Confirmed.as_str(),
            })
            .collect();
        let reasons: Vec<Option<&str>> = reactions
            .iter()
            .map(|r| match r {
                Reaction::Cancel(reason) => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        sqlx::query_scalar(
            "UPDATE bookings SET status = run.status, payment_id = run.payment_id, \
                 cancellation_reason = CASE WHEN run.status = 'CANCELLED' THEN run.reason \
                                            ELSE bookings.cancellation_reason END, \
                 updated_at = $5 \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) \
                 AS run(id, payment_id, status, reason) \
             WHERE bookings.id = run.id AND bookings.status = 'PENDING' \
             RETURNING bookings.id",
        )
        .bind(&ids)
        .bind(&payments)
        .bind(&statuses)
        .bind(&reasons)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let mut announcements = Vec::with_capacity(moved.len());
    let mut recorded = Vec::with_capacity(moved.len());
    let mut decided: HashMap<Uuid, Reaction> = HashMap::new();
    for (event, reaction) in together.into_iter().zip(reactions) {
        if moved.contains(&event.booking_id) {
            if let Some(envelope) = announcement(event, &reaction)? {
                announcements.push(envelope);
            }
            recorded.push((event, reaction.clone()));
            decided.insert(event.event_id, reaction);
        }
    }
    let stream = BookingConfirmed::STREAM.token();
    let records: Vec<(&str, &Envelope)> = announcements.iter().map(|e| (stream, e)).collect();
    enqueue_all(&mut *conn, &records).await?;
    record_outcomes(&mut *conn, &recorded).await?;
    // Not PENDING (or not there), or sharing a booking: one at a time, in delivery order.
    let undecided: Vec<&OutcomeEvent> = run
        .iter()
        .filter(|event| !decided.contains_key(&event.event_id))
        .collect();
    for event in undecided {
        let reaction = BookingRepository::apply_payment_outcome(
            &mut *conn,
            event.event_id,
            event.booking_id,
            &event.outcome,
            &event.correlation_id,
        )
        .await?;
        decided.insert(event.event_id, reaction);
    }
    run.iter()
        .map(|event| {
            decided.remove(&event.event_id).ok_or_else(|| {
                RepositoryError::Corrupt(format!("no reaction for event {}", event.event_id))
            })
        })
        .collect()
}

/// The audit records of outcomes applied together.
async fn record_outcomes(
    conn: &mut PgConnection,
    recorded: &[(&OutcomeEvent, Reaction)],
) -> Result<(), RepositoryError> {
    if recorded.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<Uuid> = recorded.iter().map(|(e, _)| e.event_id).collect();
    let bookings: Vec<Uuid> = recorded.iter().map(|(e, _)| e.booking_id).collect();
    let payments: Vec<Uuid> = recorded
        .iter()
        .map(|(e, _)| e.outcome.payment_id())
        .collect();
    let outcomes: Vec<&str> = recorded.iter().map(|(e, _)| e.outcome.kind()).collect();
    let reactions: Vec<&str> = recorded.iter().map(|(_, r)| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO payment_outcomes (event_id, booking_id, payment_id, outcome, reaction) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[]) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event_ids)
    .bind(&bookings)
    .bind(&payments)
    .bind(&outcomes)
    .bind(&reactions)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(booking_id: Uuid) -> OutcomeEvent {
        OutcomeEvent {
            event_id: Uuid::new_v4(),
            booking_id,
            outcome: PaymentOutcome::Succeeded {
                payment_id: Uuid::new_v4(),
            },
            correlation_id: CorrelationId::generate(),
        }
    }

    #[test]
    fn outcomes_sharing_a_booking_go_one_at_a_time() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let run = vec![outcome(a), outcome(b), outcome(a)];
        let (together, alone) = split(&run);
        assert_eq!(together, vec![&run[1]]);
        assert_eq!(alone, vec![&run[0], &run[2]]);
    }

    #[test]
    fn only_moves_are_announced() {
        let event = outcome(Uuid::new_v4());
        let confirmed = announcement(&event, &Reaction::Confirm).unwrap().unwrap();
        assert_eq!(confirmed.event_type, BookingConfirmed::TYPE);
        let cancelled = announcement(&event, &Reaction::Cancel("declined".into()))
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.event_type, BookingCancelled::TYPE);
        assert!(announcement(&event, &Reaction::Record).unwrap().is_none());
    }
}

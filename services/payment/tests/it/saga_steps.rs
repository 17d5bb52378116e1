//! payment-service's reactions to events, including duplicates and crashes.

use crate::support::{PaymentUnderTest, WAIT, booking_created, eventually};
use payment_service::charging::Charging;
use payment_service::consumers::CONSUMER_NAME;
use payment_service::gateway::ChargeRequest;
use payment_service::payment::{NewPayment, PaymentStatus};
use silo_kit::events::{
    BookingCancelled, BookingCreated, Envelope, RefundRequested, UserEmailChanged,
};
use uuid::Uuid;

#[tokio::test]
async fn a_created_booking_gets_one_succeeded_payment_and_the_event_goes_out() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let booking = booking_created(Uuid::new_v4(), 150);
    t.publish(&booking).await;
    let payment = eventually("the payment", WAIT, || async {
        let found = t
            .app
            .store()
            .find_by_booking(booking.booking_id)
            .await
            .unwrap();
        found.filter(|p| p.status != PaymentStatus::Pending)
    })
    .await;
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.user_email.as_deref(), Some("ada@example.com"));
    assert_eq!(payment.payment_method.as_ref().unwrap().last4, "4242");
    assert_eq!(gateway.captures(), 1);
    let events = eventually("PaymentSucceeded", WAIT, || async {
        let events = t.payment_events().await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "PaymentSucceeded");
    assert_eq!(events[0].data["bookingId"], booking.booking_id.to_string());
    assert_eq!(events[0].data["paymentId"], payment.id.to_string());
    assert_eq!(events[0].correlation_id, "test");
}

#[tokio::test]
async fn an_amount_above_the_threshold_fails_with_a_reason() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let booking = booking_created(Uuid::new_v4(), 10_001);
    t.publish(&booking).await;
    let events = eventually("PaymentFailed", WAIT, || async {
        let events = t.payment_events().await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0].event_type, "PaymentFailed");
    assert!(
        events[0].data["reason"]
            .as_str()
            .unwrap()
            .contains("exceeds")
    );
    let payment = t
        .app
        .store()
        .find_by_booking(booking.booking_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(gateway.captures(), 0);
}

#[tokio::test]
async fn every_event_delivered_twice_still_makes_one_payment_per_booking() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let user = Uuid::new_v4();
    let bookings: Vec<BookingCreated> = (0..20).map(|_| booking_created(user, 10)).collect();
    for booking in &bookings {
        let envelope = Envelope::new(booking, "dup").unwrap();
        // Two message ids: the broker does not de-duplicate, the consumer sees it twice.
        t.publish_as::<BookingCreated>(&envelope, &format!("{}-a", envelope.event_id))
            .await;
        t.publish_as::<BookingCreated>(&envelope, &format!("{}-b", envelope.event_id))
            .await;
    }
    // The same booking announced again under a new event id is not charged again either.
    t.publish(&bookings[0]).await;
    eventually("one outcome per booking", WAIT, || async {
        let events = t.payment_events().await;
        (events.len() >= bookings.len()).then_some(events)
    })
    .await;
    for booking in &bookings {
        let payment = t
            .app
            .store()
            .find_by_booking(booking.booking_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payment.status, PaymentStatus::Succeeded);
    }
    // Let any late duplicate finish, then check nothing more was charged or published.
    t.wait_until_bookings_consumer_drained().await;
    assert_eq!(gateway.captures(), bookings.len() as u64);
    assert_eq!(t.payment_events().await.len(), bookings.len());
}

#[tokio::test]
async fn a_crash_between_effect_and_ack_does_not_charge_twice() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let charging = Charging::new(t.app.store().clone(), t.gateway.clone());
    let booking = booking_created(Uuid::new_v4(), 10);
    let envelope = Envelope::new(&booking, "crash").unwrap();
    // First delivery: the effect (payment, outbox, inbox) commits, then the process dies
    // before acknowledging, so the broker still holds the message.
    charging
        .on_booking_created(&envelope, CONSUMER_NAME)
        .await
        .unwrap();
    assert_eq!(gateway.captures(), 1);
    // Redelivery reaches the running consumer.
    t.publish_as::<BookingCreated>(&envelope, &envelope.event_id.to_string())
        .await;
    t.wait_until_bookings_consumer_drained().await;
    assert_eq!(gateway.captures(), 1);
    let events = eventually("the one outcome event", WAIT, || async {
        let events = t.payment_events().await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn a_crash_between_charge_and_commit_repeats_the_same_charge_request() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let booking = booking_created(Uuid::new_v4(), 10);
    // The first delivery opened the payment and charged it, then died before committing.
    let payment = t
        .app
        .store()
        .open(NewPayment {
            booking_id: booking.booking_id,
            user_id: booking.user_id,
            user_email: Some(booking.user_email.clone()),
            user_email_as_of: chrono::Utc::now(),
            amount: booking.total_amount,
            currency: booking.currency.clone(),
            metadata: serde_json::json!({}),
        })
        .await
        .unwrap();
    let first = t
        .gateway
        .charge(&ChargeRequest {
            idempotency_key: payment_service::charging::idempotency_key(&payment),
            amount: payment.amount,
            currency: payment.currency.clone(),
        })
        .await
        .unwrap();
    t.publish(&booking).await;
    let done = eventually("the payment to complete", WAIT, || async {
        let found = t.app.store().get(payment.id).await.unwrap();
        found.filter(|p| p.status != PaymentStatus::Pending)
    })
    .await;
    assert_eq!(done.transaction_id.as_deref(), first.transaction_id());
    assert_eq!(gateway.captures(), 1);
}

#[tokio::test]
async fn a_refund_request_refunds_the_succeeded_payment() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let booking = booking_created(Uuid::new_v4(), 10);
    t.publish(&booking).await;
    let paid = eventually("the payment", WAIT, || async {
        let found = t
            .app
            .store()
            .find_by_booking(booking.booking_id)
            .await
            .unwrap();
        found.filter(|p| p.status == PaymentStatus::Succeeded)
    })
    .await;
    t.publish(&RefundRequested {
        payment_id: paid.id,
        booking_id: booking.booking_id,
    })
    .await;
    eventually("the refund", WAIT, || async {
        let found = t.app.store().get(paid.id).await.unwrap();
        found.filter(|p| p.status == PaymentStatus::Refunded)
    })
    .await;
    assert_eq!(
        gateway.refunds_of(paid.transaction_id.as_deref().unwrap()),
        1
    );
}

#[tokio::test]
async fn an_email_change_updates_the_users_payments() {
    let (t, _) = PaymentUnderTest::start().await;
    let user = Uuid::new_v4();
    let booking = booking_created(user, 10);
    t.publish(&booking).await;
    let payment = eventually("the payment", WAIT, || async {
        t.app
            .store()
            .find_by_booking(booking.booking_id)
            .await
            .unwrap()
    })
    .await;
    t.publish(&UserEmailChanged {
        user_id: user,
        old_email: "ada@example.com".into(),
        new_email: "ada@new.example".into(),
    })
    .await;
    eventually("the new email", WAIT, || async {
        let found = t.app.store().get(payment.id).await.unwrap();
        found.filter(|p| p.user_email.as_deref() == Some("ada@new.example"))
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_bookings_failed_payment_is_no_longer_retryable() {
    let (t, _) = PaymentUnderTest::start().await;
    let user = Uuid::new_v4();
    let booking = booking_created(user, 20_000);
    t.publish(&booking).await;
    let failed = eventually("the failed payment", WAIT, || async {
        let found = t
            .app
            .store()
            .find_by_booking(booking.booking_id)
            .await
            .unwrap();
        found.filter(|p| p.status == PaymentStatus::Failed)
    })
    .await;
    t.publish(&BookingCancelled {
        booking_id: booking.booking_id,
        reason: "payment failed".into(),
    })
    .await;
    eventually("the booking's fate", WAIT, || async {
        let found = t.app.store().get(failed.id).await.unwrap();
        found.filter(|p| p.booking_status == payment_service::payment::BookingState::Cancelled)
    })
    .await;
    let token = t.keys.token(user, &["user"]);
    let (status, body) = t
        .post(&token, &format!("/api/payments/{}/retry", failed.id))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("CANCELLED"));
}

/// Unreachable for the first call of each attempt, then the simulator.
struct UnreachableOnce {
    failed: std::sync::Mutex<std::collections::HashSet<String>>,
    inner: payment_service::gateway::SimulatedGateway,
}

#[async_trait::async_trait]
impl payment_service::gateway::PaymentGateway for UnreachableOnce {
    async fn charge(
        &self,
        request: &ChargeRequest,
    ) -> Result<payment_service::payment::ChargeResult, payment_service::gateway::GatewayError>
    {
        if self
            .failed
            .lock()
            .unwrap()
            .insert(request.idempotency_key.clone())
        {
            return Err(payment_service::gateway::GatewayError::Unavailable(
                "timeout".into(),
            ));
        }
        self.inner.charge(request).await
    }

    async fn refund(&self, id: &str) -> Result<(), payment_service::gateway::GatewayError> {
        self.inner.refund(id).await
    }
}

#[tokio::test]
async fn an_unreachable_gateway_is_retried_by_redelivery_and_charges_once() {
    let gateway = std::sync::Arc::new(UnreachableOnce {
        failed: Default::default(),
        inner: Default::default(),
    });
    let t = PaymentUnderTest::start_with(gateway.clone()).await;
    let booking = booking_created(Uuid::new_v4(), 10);
    t.publish(&booking).await;
    let paid = eventually("the payment after a redelivery", WAIT, || async {
        let found = t
            .app
            .store()
            .find_by_booking(booking.booking_id)
            .await
            .unwrap();
        found.filter(|p| p.status == PaymentStatus::Succeeded)
    })
    .await;
    assert_eq!(paid.attempts, 1);
    assert_eq!(gateway.inner.captures(), 1);
}

#[tokio::test]
async fn an_undecodable_event_is_dead_lettered() {
    let (t, gateway) = PaymentUnderTest::start().await;
    let mut envelope = Envelope::new(&booking_created(Uuid::new_v4(), 10), "bad").unwrap();
    envelope.data = serde_json::json!({ "bookingId": "not-a-uuid" });
    t.publish_as::<BookingCreated>(&envelope, &envelope.event_id.to_string())
        .await;
    t.wait_until_bookings_consumer_drained().await;
    let letter = eventually("the dead letter", WAIT, || async {
        let rows: Vec<(Option<Uuid>, String)> =
            sqlx::query_as("SELECT event_id, consumer FROM dead_letters")
                .fetch_all(&t.pool())
                .await
                .unwrap();
        rows.into_iter().next()
    })
    .await;
    assert_eq!(letter, (Some(envelope.event_id), CONSUMER_NAME.to_string()));
    assert_eq!(gateway.captures(), 0);
}

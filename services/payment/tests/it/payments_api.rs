//! payment-service's endpoints.

use crate::support::{PaymentUnderTest, WAIT, booking_created, eventually};
use payment_service::gateway::{ChargeRequest, GatewayError, PaymentGateway, SimulatedGateway};
use payment_service::payment::{ChargeResult, Payment, PaymentStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use uuid::Uuid;

/// Declines every first attempt of a payment, then behaves like the simulator.
struct DeclinesFirstAttempt {
    declined: AtomicU32,
    inner: SimulatedGateway,
}

#[async_trait::async_trait]
impl PaymentGateway for DeclinesFirstAttempt {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeResult, GatewayError> {
        if request.idempotency_key.ends_with(":1") {
            self.declined.fetch_add(1, Ordering::SeqCst);
            let accepted = self.inner.charge(request).await?;
            return Ok(ChargeResult::Declined {
                reason: "insufficient funds".into(),
                method: accepted.method().clone(),
            });
        }
        self.inner.charge(request).await
    }

    async fn refund(&self, transaction_id: &str) -> Result<(), GatewayError> {
        self.inner.refund(transaction_id).await
    }
}

async fn settled_payment(t: &PaymentUnderTest, booking_id: Uuid) -> Payment {
    eventually("the payment", WAIT, || async {
        let found = t.app.store().find_by_booking(booking_id).await.unwrap();
        found.filter(|p| p.status != PaymentStatus::Pending)
    })
    .await
}

#[tokio::test]
async fn a_payment_is_visible_to_its_user_and_admins_only() {
    let (t, _) = PaymentUnderTest::start().await;
    let user = Uuid::new_v4();
    let booking = booking_created(user, 10);
    t.publish(&booking).await;
    let payment = settled_payment(&t, booking.booking_id).await;
    let path = format!("/api/payments/{}", payment.id);

    let owner = t.keys.token(user, &["user"]);
    let (status, body) = t.get(&owner, &path).await;
    assert_eq!(status, 200);
    assert_eq!(body["bookingId"], booking.booking_id.to_string());
    assert_eq!(body["status"], "SUCCEEDED");
    assert_eq!(body["paymentMethod"]["type"], "CreditCard");
    let admin = t.keys.token(Uuid::new_v4(), &["admin"]);
    assert_eq!(t.get(&admin, &path).await.0, 200);
    let stranger = t.keys.token(Uuid::new_v4(), &["user"]);
    assert_eq!(t.get(&stranger, &path).await.0, 404);
    assert_eq!(
        t.get(&owner, &format!("/api/payments/{}", Uuid::new_v4()))
            .await
            .0,
        404
    );
    let (status, body) = t.get(&owner, "/api/payments/nope").await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "https://silo.dev/problems/validation-failed");
    assert_eq!(
        body["errors"],
        serde_json::json!([{"field": "id", "message": "the path parameter id must be a UUID"}])
    );
    let anonymous = t.http.get(t.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let query = format!("/api/payments?bookingId={}", booking.booking_id);
    let (status, found) = t.get(&owner, &query).await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["id"], payment.id.to_string());
    let (_, hidden) = t.get(&stranger, &query).await;
    assert_eq!(hidden["items"].as_array().unwrap().len(), 0);
    let (status, body) = t.get(&owner, "/api/payments").await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "https://silo.dev/problems/validation-failed");
    assert_eq!(
        body["errors"],
        serde_json::json!([{"field": "bookingId", "message": "bookingId is required"}])
    );
    let (status, body) = t.get(&owner, "/api/payments?bookingId=42&extra=1").await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["extra", "bookingId"], "{body}");
}

#[tokio::test]
async fn a_failed_payment_of_a_pending_booking_is_retried() {
    let gateway = Arc::new(DeclinesFirstAttempt {
        declined: AtomicU32::new(0),
        inner: SimulatedGateway::default(),
    });
    let t = PaymentUnderTest::start_with(gateway.clone()).await;
    let user = Uuid::new_v4();
    let booking = booking_created(user, 10);
    t.publish(&booking).await;
    let failed = settled_payment(&t, booking.booking_id).await;
    assert_eq!(failed.status, PaymentStatus::Failed);
    let token = t.keys.token(user, &["user"]);
    let path = format!("/api/payments/{}/retry", failed.id);

    let (status, retried) = t.post(&token, &path).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "SUCCEEDED");
    assert_eq!(retried["attempts"], 2);
    let (status, body) = t.post(&token, &path).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("https://silo.dev/problems/payment-not-retryable"))
    );
    let stranger = t.keys.token(Uuid::new_v4(), &["user"]);
    assert_eq!(t.post(&stranger, &path).await.0, 404);
    assert_eq!(gateway.declined.load(Ordering::SeqCst), 1);

    let events = eventually("PaymentFailed then PaymentSucceeded", WAIT, || async {
        let events = t.payment_events().await;
        (events.len() == 2).then_some(events)
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["PaymentFailed", "PaymentSucceeded"]);
}

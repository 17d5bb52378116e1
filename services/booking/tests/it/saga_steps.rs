//! booking-service's saga step and replica updates, driven through the kit's inbox exactly as
//! the consumer drives them, including duplicate and late deliveries.

use crate::support::{BookingUnderTest, booking_body, json};
use booking_service::consumers::{CONSUMER_NAME, PaymentEvents, UserEvents};
use rust_decimal::Decimal;
use silo_kit::consumer::{MessageHandler, Processed};
use silo_kit::events::{
    Envelope, PaymentFailed, PaymentSucceeded, UserEmailChanged, UserRegistered,
};
use silo_kit::inbox::postgres::PgInbox;
use uuid::Uuid;

fn succeeded(booking_id: Uuid) -> Envelope {
    let event = PaymentSucceeded {
        payment_id: Uuid::new_v4(),
        booking_id,
        amount: Decimal::from(10),
        currency: "USD".into(),
        transaction_id: "txn_1".into(),
    };
    Envelope::new(&event, "c").unwrap()
}

fn failed(booking_id: Uuid) -> Envelope {
    let event = PaymentFailed {
        payment_id: Uuid::new_v4(),
        booking_id,
        amount: Decimal::from(10),
        currency: "USD".into(),
        reason: "card declined".into(),
    };
    Envelope::new(&event, "c").unwrap()
}

async fn outbox_types(t: &BookingUnderTest) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq")
        .fetch_all(t.app.pool())
        .await
        .unwrap()
}

async fn status_of(t: &BookingUnderTest, id: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, cancellation_reason FROM bookings WHERE id = $1")
        .bind(id)
        .fetch_one(t.app.pool())
        .await
        .unwrap()
}

async fn new_booking(t: &BookingUnderTest, token: &str) -> Uuid {
    let (_, body) = json(t.create(token, booking_body("10")).await).await;
    body["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_payment_success_delivered_twice_confirms_once() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let id = new_booking(&t, &token).await;
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, PaymentEvents);
    let event = succeeded(id);
    assert_eq!(inbox.handle(&event).await.unwrap(), Processed::Applied);
    assert_eq!(inbox.handle(&event).await.unwrap(), Processed::Duplicate);
    assert_eq!(status_of(&t, id).await.0, "CONFIRMED");
    assert_eq!(
        outbox_types(&t).await,
        ["BookingCreated", "BookingConfirmed"]
    );
}

#[tokio::test]
async fn a_payment_failure_cancels_with_the_reason_as_compensation() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let id = new_booking(&t, &token).await;
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, PaymentEvents);
    inbox.handle(&failed(id)).await.unwrap();
    let (status, reason) = status_of(&t, id).await;
    assert_eq!(status, "CANCELLED");
    assert_eq!(reason.as_deref(), Some("payment failed: card declined"));
    assert_eq!(
        outbox_types(&t).await,
        ["BookingCreated", "BookingCancelled"]
    );
}

#[tokio::test]
async fn a_late_success_for_a_cancelled_booking_asks_for_a_refund_and_never_confirms() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let id = new_booking(&t, &token).await;
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, PaymentEvents);
    inbox.handle(&failed(id)).await.unwrap();
    let late = succeeded(id);
    inbox.handle(&late).await.unwrap();
    inbox.handle(&late).await.unwrap();
    assert_eq!(status_of(&t, id).await.0, "CANCELLED");
    assert_eq!(
        outbox_types(&t).await,
        ["BookingCreated", "BookingCancelled", "RefundRequested"]
    );
    let reactions: Vec<String> = sqlx::query_scalar(
        "SELECT reaction FROM payment_outcomes WHERE booking_id = $1 ORDER BY received_at",
    )
    .bind(id)
    .fetch_all(t.app.pool())
    .await
    .unwrap();
    assert_eq!(reactions, ["CANCELLED", "REFUND_REQUESTED"]);
}

#[tokio::test]
async fn outcomes_for_a_confirmed_booking_are_only_recorded() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let id = new_booking(&t, &token).await;
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, PaymentEvents);
    inbox.handle(&succeeded(id)).await.unwrap();
    inbox.handle(&failed(id)).await.unwrap();
    inbox.handle(&succeeded(id)).await.unwrap();
    assert_eq!(status_of(&t, id).await.0, "CONFIRMED");
    assert_eq!(
        outbox_types(&t).await,
        ["BookingCreated", "BookingConfirmed"]
    );
}

#[tokio::test]
async fn user_events_feed_the_replica_and_the_booking_email_copies() {
    let t = BookingUnderTest::start().await;
    let (user, token) = t.users.add_user("ada@example.com");
    let id = new_booking(&t, &token).await;
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, UserEvents);
    let newcomer = Uuid::new_v4();
    let registered = UserRegistered {
        user_id: newcomer,
        email: "new@example.com".into(),
        full_name: "New Comer".into(),
    };
    inbox
        .handle(&Envelope::new(&registered, "c").unwrap())
        .await
        .unwrap();
    let changed = UserEmailChanged {
        user_id: user.id,
        old_email: "ada@example.com".into(),
        new_email: "ada@new.example".into(),
    };
    let envelope = Envelope::new(&changed, "c").unwrap();
    assert_eq!(inbox.handle(&envelope).await.unwrap(), Processed::Applied);
    assert_eq!(inbox.handle(&envelope).await.unwrap(), Processed::Duplicate);

    let email: String = sqlx::query_scalar("SELECT user_email FROM bookings WHERE id = $1")
        .bind(id)
        .fetch_one(t.app.pool())
        .await
        .unwrap();
    assert_eq!(email, "ada@new.example");
    let replica: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT user_id, email FROM known_users ORDER BY email")
            .fetch_all(t.app.pool())
            .await
            .unwrap();
    assert_eq!(
        replica,
        [
            (user.id, "ada@new.example".to_string()),
            (newcomer, "new@example.com".to_string())
        ]
    );
}

#[tokio::test]
async fn an_email_change_handled_after_a_newer_one_is_ignored() {
    let t = BookingUnderTest::start().await;
    let (user, token) = t.users.add_user("ada@example.com");
    let id = new_booking(&t, &token).await;
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, UserEvents);
    let change = |from: &str, to: &str| UserEmailChanged {
        user_id: user.id,
        old_email: from.into(),
        new_email: to.into(),
    };
    let first = Envelope::new(&change("ada@example.com", "b@example.com"), "c").unwrap();
    let second = Envelope::new(&change("b@example.com", "c@example.com"), "c").unwrap();
    inbox.handle(&second).await.unwrap();
    inbox.handle(&first).await.unwrap();
    let email: String = sqlx::query_scalar("SELECT user_email FROM bookings WHERE id = $1")
        .bind(id)
        .fetch_one(t.app.pool())
        .await
        .unwrap();
    assert_eq!(email, "c@example.com");
}

async fn reactions(t: &BookingUnderTest) -> Vec<(Uuid, String, String)> {
    sqlx::query_as(
        "SELECT booking_id, outcome, reaction FROM payment_outcomes ORDER BY booking_id, outcome",
    )
    .fetch_all(t.app.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_run_of_outcomes_moves_each_booking_as_one_at_a_time_would() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let (paid, declined, cancelled, twice) = (
        new_booking(&t, &token).await,
        new_booking(&t, &token).await,
        new_booking(&t, &token).await,
        new_booking(&t, &token).await,
    );
    let inbox = PgInbox::new(t.app.pool().clone(), CONSUMER_NAME, PaymentEvents);
    // `cancelled` is cancelled by its owner before its payment goes through.
    let cancel = t
        .post_empty(&token, &format!("/api/bookings/{cancelled}/cancel"))
        .await;
    assert_eq!(cancel.status(), 200);
    let paid_event = succeeded(paid);
    let run = [
        paid_event.clone(),
        failed(declined),
        succeeded(cancelled),
        // Two outcomes for one booking in one run: the first (a failure) wins, the late
        // success asks for a refund, exactly as if delivered one at a time.
        failed(twice),
        succeeded(twice),
        paid_event,
        succeeded(Uuid::new_v4()),
    ];
    let outcomes = inbox.handle_batch(&run).await.unwrap();
    assert_eq!(
        outcomes,
        [
            Processed::Applied,
            Processed::Applied,
            Processed::Applied,
            Processed::Applied,
            Processed::Applied,
            Processed::Duplicate,
            Processed::Applied
        ]
    );
    assert_eq!(status_of(&t, paid).await.0, "CONFIRMED");
    let (status, reason) = status_of(&t, declined).await;
    assert_eq!(status, "CANCELLED");
    assert_eq!(reason.as_deref(), Some("payment failed: card declined"));
    assert_eq!(status_of(&t, cancelled).await.0, "CANCELLED");
    assert_eq!(status_of(&t, twice).await.0, "CANCELLED");
    let mut types = outbox_types(&t).await;
    types.sort();
    assert_eq!(
        types,
        [
            "BookingCancelled", // by its owner
            "BookingCancelled", // declined
            "BookingCancelled", // twice
            "BookingConfirmed",
            "BookingCreated",
            "BookingCreated",
            "BookingCreated",
            "BookingCreated",
            "RefundRequested", // cancelled
            "RefundRequested", // twice
        ]
    );
    let recorded = reactions(&t).await;
    assert_eq!(recorded.len(), 6, "{recorded:?}");
    let reaction_of = |booking: Uuid, outcome: &str| {
        recorded
            .iter()
            .find(|(b, o, _)| *b == booking && o == outcome)
            .map(|(_, _, r)| r.clone())
    };
    assert_eq!(reaction_of(paid, "SUCCEEDED").as_deref(), Some("CONFIRMED"));
    assert_eq!(
        reaction_of(declined, "FAILED").as_deref(),
        Some("CANCELLED")
    );
    assert_eq!(
        reaction_of(cancelled, "SUCCEEDED").as_deref(),
        Some("REFUND_REQUESTED")
    );
    assert_eq!(reaction_of(twice, "FAILED").as_deref(), Some("CANCELLED"));
    assert_eq!(
        reaction_of(twice, "SUCCEEDED").as_deref(),
        Some("REFUND_REQUESTED")
    );
}

//! The outbox under a broker outage: bookings are accepted while NATS is down, and every
//! event is published exactly once after it returns.

use crate::broker::PrivateBroker;
use crate::support::{
    UserServiceStandIn, base_config, booking_body, eventually, private_namespace, stream_events_on,
};
use booking_service::BookingConfig;
use payment_service::PaymentConfig;
use payment_service::gateway::SimulatedGatewayConfig;
use silo_kit::events::StreamKind;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[tokio::test]
async fn bookings_made_while_the_broker_is_down_all_complete_with_each_event_published_once() {
    let mut broker = PrivateBroker::start();
    let users = UserServiceStandIn::start().await;
    let namespace = private_namespace();
    let booking_db = silo_testenv::TestDatabase::create().await;
    let payment_db = silo_testenv::TestDatabase::create().await;
    let booking = booking_service::Application::build(BookingConfig {
        base: base_config(booking_db.url(), &broker.url()),
        user_service_url: users.url(),
        namespace: namespace.clone(),
        startup_timeout: std::time::Duration::from_secs(30),
    })
    .await
    .unwrap();
    let payment = payment_service::Application::build(PaymentConfig {
        base: base_config(payment_db.url(), &broker.url()),
        user_service_url: users.url(),
        gateway: SimulatedGatewayConfig::default(),
        namespace: namespace.clone(),
        startup_timeout: std::time::Duration::from_secs(30),
    })
    .await
    .unwrap();
    let (_, token) = users.add_user("ada@example.com");
    let http = reqwest::Client::new();
    let create_url = format!("http://{}/api/bookings", booking.address());

    broker.stop();
    let mut created = HashSet::new();
    for _ in 0..100 {
        let response = http
            .post(&create_url)
            .bearer_auth(&token)
            .json(&booking_body("25"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        created.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(created.len(), 100);
    broker.resume();

    eventually(
        "all 100 bookings confirmed",
        Duration::from_secs(90),
        || async {
            let confirmed: i64 =
                sqlx::query_scalar("SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'")
                    .fetch_one(booking.pool())
                    .await
                    .unwrap();
            (confirmed == 100).then_some(())
        },
    )
    .await;
    let context = async_nats::jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    let bookings_stream = eventually(
        "BookingConfirmed published",
        Duration::from_secs(30),
        || async {
            let events = stream_events_on(&context, &namespace, StreamKind::Bookings).await;
            (events.len() >= 200).then_some(events)
        },
    )
    .await;
    let payments_stream = stream_events_on(&context, &namespace, StreamKind::Payments).await;

    let mut per_type: HashMap<String, usize> = HashMap::new();
    let mut ids = HashSet::new();
    for event in bookings_stream.iter().chain(&payments_stream) {
        *per_type.entry(event.event_type.clone()).or_default() += 1;
        assert!(
            ids.insert(event.event_id),
            "event {} published twice",
            event.event_id
        );
    }
    assert_eq!(per_type.get("BookingCreated"), Some(&100));
    assert_eq!(per_type.get("BookingConfirmed"), Some(&100));
    assert_eq!(per_type.get("PaymentSucceeded"), Some(&100));
    assert_eq!(per_type.len(), 3, "{per_type:?}");
    let announced: HashSet<String> = bookings_stream
        .iter()
        .filter(|e| e.event_type == "BookingCreated")
        .map(|e| e.data["bookingId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(announced, created);

    payment.stop().await;
    booking.stop().await;
    users.stop().await;
}

//! The booking system end to end: user-service, booking-service and payment-service
//! in-process on random ports, each with its own database, sharing only the broker.

use crate::support::{base_config, eventually, nats_url, private_namespace};
use payment_service::gateway::SimulatedGatewayConfig;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::time::Duration;
use user_service::UserConfig;

const SAGA_WAIT: Duration = Duration::from_secs(20);

/// The three services and their databases.
pub struct System {
    pub user: user_service::Application,
    pub booking: booking_service::Application,
    pub payment: payment_service::Application,
    pub http: reqwest::Client,
    _databases: Vec<silo_testenv::TestDatabase>,
}

impl System {
    pub async fn start(gateway: SimulatedGatewayConfig) -> Self {
        let namespace = private_namespace();
        let databases = vec![
            silo_testenv::TestDatabase::create().await,
            silo_testenv::TestDatabase::create().await,
            silo_testenv::TestDatabase::create().await,
        ];
        let user = user_service::Application::build(UserConfig {
            base: base_config(databases[0].url(), &nats_url()),
            namespace: namespace.clone(),
            token_lifetime: Duration::from_secs(3600),
            signing_key: None,
            keys_reload: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(30),
            json_logs: false,
        })
        .await
        .unwrap();
        let user_url = format!("http://{}", user.address());
        let booking = booking_service::Application::build(booking_service::BookingConfig {
            base: base_config(databases[1].url(), &nats_url()),
            user_service_url: user_url.clone(),
            namespace: namespace.clone(),
            startup_timeout: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
        let payment = payment_service::Application::build(payment_service::PaymentConfig {
            base: base_config(databases[2].url(), &nats_url()),
            user_service_url: user_url,
            gateway,
            namespace,
            startup_timeout: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
        Self {
            user,
            booking,
            payment,
            http: reqwest::Client::new(),
            _databases: databases,
        }
    }

    fn user_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.user.address())
    }

    fn booking_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.booking.address())
    }

    fn payment_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.payment.address())
    }

    /// Registers and logs in a user; returns its id and token.
    pub async fn sign_up(&self, username: &str) -> (String, String) {
        let registered = self
            .http
            .post(self.user_url("/api/users/register"))
            .json(&json!({
                "username": username, "email": format!("{username}@example.com"),
                "password": "correct horse battery", "fullName": "Ada Lovelace",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status().as_u16(), 201);
        let login: Value = self
            .http
            .post(self.user_url("/api/users/login"))
            .json(&json!({ "username": username, "password": "correct horse battery" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = login["user"]["id"].as_str().unwrap().to_string();
        (id, login["token"].as_str().unwrap().to_string())
    }

    pub async fn book(&self, token: &str, amount: &str) -> Value {
        let response = self
            .http
            .post(self.booking_url("/api/bookings"))
            .bearer_auth(token)
            .json(&json!({ "eventName": "Concert", "ticketCount": 2, "totalAmount": amount }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        response.json().await.unwrap()
    }

    pub async fn booking(&self, token: &str, id: &str) -> Value {
        self.http
            .get(self.booking_url(&format!("/api/bookings/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The booking once it left `PENDING`.
    pub async fn settled_booking(&self, token: &str, id: &str) -> Value {
        eventually("the booking to settle", SAGA_WAIT, || async {
            let booking = self.booking(token, id).await;
            (booking["status"] != "PENDING").then_some(booking)
        })
        .await
    }

    pub async fn payment_of(&self, token: &str, booking_id: &str) -> Option<Value> {
        let found: Value = self
            .http
            .get(self.payment_url(&format!("/api/payments?bookingId={booking_id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        found["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    }

    pub async fn stop(self) {
        self.payment.stop().await;
        self.booking.stop().await;
        self.user.stop().await;
    }
}

#[tokio::test]
async fn a_booking_is_confirmed_end_to_end_without_any_manual_call() {
    let system = System::start(SimulatedGatewayConfig::default()).await;
    let (user_id, token) = system.sign_up("ada").await;
    let created = system.book(&token, "150.00").await;
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["userEmail"], "ada@example.com");
    let id = created["id"].as_str().unwrap();

    let confirmed = system.settled_booking(&token, id).await;
    assert_eq!(confirmed["status"], "CONFIRMED");
    let payment = system.payment_of(&token, id).await.unwrap();
    assert_eq!(payment["status"], "SUCCEEDED");
    assert_eq!(payment["userId"], user_id);
    assert_eq!(payment["userEmail"], "ada@example.com");
    assert_eq!(payment["amount"], "150.00");
    system.stop().await;
}

#[tokio::test]
async fn a_declined_amount_cancels_the_booking_with_the_reason() {
    let system = System::start(SimulatedGatewayConfig {
        decline_above: Decimal::from(100),
        latency: Duration::ZERO,
    })
    .await;
    let (_, token) = system.sign_up("bob").await;
    let created = system.book(&token, "100.01").await;
    let id = created["id"].as_str().unwrap();

    let cancelled = system.settled_booking(&token, id).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    let reason = cancelled["cancellationReason"].as_str().unwrap();
    assert!(reason.starts_with("payment failed:"), "{reason}");
    assert!(reason.contains("exceeds"), "{reason}");
    let payment = system.payment_of(&token, id).await.unwrap();
    assert_eq!(payment["status"], "FAILED");
    system.stop().await;
}

#[tokio::test]
async fn an_email_change_reaches_the_booking_and_payment_copies() {
    let system = System::start(SimulatedGatewayConfig::default()).await;
    let (user_id, token) = system.sign_up("cleo").await;
    let created = system.book(&token, "20").await;
    let id = created["id"].as_str().unwrap();
    system.settled_booking(&token, id).await;

    let patched = system
        .http
        .patch(system.user_url(&format!("/api/users/{user_id}")))
        .bearer_auth(&token)
        .json(&json!({ "email": "cleo@new.example" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);

    eventually("the booking's email copy", SAGA_WAIT, || async {
        let booking = system.booking(&token, id).await;
        (booking["userEmail"] == "cleo@new.example").then_some(())
    })
    .await;
    eventually("the payment's email copy", SAGA_WAIT, || async {
        let payment = system.payment_of(&token, id).await?;
        (payment["userEmail"] == "cleo@new.example").then_some(())
    })
    .await;
    system.stop().await;
}

#[tokio::test]
async fn a_payment_that_lands_after_cancellation_is_refunded_and_never_confirms() {
    // A slow gateway leaves time to cancel while the charge is in flight.
    let system = System::start(SimulatedGatewayConfig {
        decline_above: Decimal::from(10_000),
        latency: Duration::from_millis(1500),
    })
    .await;
    let (_, token) = system.sign_up("dan").await;
    let created = system.book(&token, "30").await;
    let id = created["id"].as_str().unwrap();
    let cancelled = system
        .http
        .post(system.booking_url(&format!("/api/bookings/{id}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status().as_u16(), 200);

    eventually("the refund", SAGA_WAIT, || async {
        let payment = system.payment_of(&token, id).await?;
        (payment["status"] == "REFUNDED").then_some(())
    })
    .await;
    let booking = system.booking(&token, id).await;
    assert_eq!(booking["status"], "CANCELLED");
    assert_eq!(booking["cancellationReason"], "cancelled by the user");
    let reaction: String =
        sqlx::query_scalar("SELECT reaction FROM payment_outcomes WHERE booking_id = $1::uuid")
            .bind(id)
            .fetch_one(system.booking.pool())
            .await
            .unwrap();
    assert_eq!(reaction, "REFUND_REQUESTED");
    system.stop().await;
}

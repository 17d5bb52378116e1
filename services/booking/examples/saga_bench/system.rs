//! The booking system in-process: user-service, booking-service and payment-service on three
//! fresh databases of the local PostgreSQL, one NATS namespace of their own, and the users
//! who book through the HTTP API.

use crate::BenchResult;
use crate::load::Creates;
use payment_service::gateway::SimulatedGatewayConfig;
use serde_json::{Value, json};
use silo_kit::config::{BaseConfig, Secret};
use silo_kit::events::{EventNamespace, StreamKind};
use silo_testenv::TestDatabase;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The three services and their databases (dropped with this value).
pub struct System {
    /// user-service (registration, login, JWKS).
    pub user: user_service::Application,
    /// booking-service.
    pub booking: booking_service::Application,
    /// payment-service (PostgreSQL store).
    pub payment: payment_service::Application,
    /// booking-service's database.
    pub booking_db: TestDatabase,
    /// payment-service's database.
    pub payment_db: TestDatabase,
    _user_db: TestDatabase,
    broker_url: String,
    namespace: EventNamespace,
}

fn base(database_url: &str, broker_url: &str) -> BaseConfig {
    BaseConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: Secret::new(database_url),
        broker_url: Secret::new(broker_url),
        server: silo_kit::server::ServerLimits::default(),
    }
}

impl System {
    /// Starts the three services against the broker at `broker_url`, under a namespace of
    /// this run.
    pub async fn start(broker_url: &str) -> BenchResult<Self> {
        let namespace =
            EventNamespace::prefixed(format!("bench{}", silo_testenv::unique_suffix()))?;
        let user_db = TestDatabase::create().await;
        let booking_db = TestDatabase::create().await;
        let payment_db = TestDatabase::create().await;
        let startup_timeout = Duration::from_secs(30);
        let user = user_service::Application::build(user_service::UserConfig {
            base: base(user_db.url(), broker_url),
            namespace: namespace.clone(),
            token_lifetime: Duration::from_secs(3600),
            signing_key: None,
            keys_reload: Duration::from_secs(10),
            startup_timeout,
            json_logs: false,
        })
        .await?;
        let user_service_url = format!("http://{}", user.address());
        let booking = booking_service::Application::build(booking_service::BookingConfig {
            base: base(booking_db.url(), broker_url),
            user_service_url: user_service_url.clone(),
            namespace: namespace.clone(),
            startup_timeout,
        })
        .await?;
        let payment = payment_service::Application::build(payment_service::PaymentConfig {
            base: base(payment_db.url(), broker_url),
            user_service_url,
            gateway: SimulatedGatewayConfig::default(),
            namespace: namespace.clone(),
            startup_timeout,
        })
        .await?;
        Ok(Self {
            user,
            booking,
            payment,
            booking_db,
            payment_db,
            _user_db: user_db,
            broker_url: broker_url.to_string(),
            namespace,
        })
    }

    /// Registers `count` users and logs each in once; returns their tokens once
    /// booking-service knows them all from `UserRegistered` (so no create asks user-service).
    pub async fn sign_up(&self, http: &reqwest::Client, count: usize) -> BenchResult<Vec<String>> {
        let user_url = format!("http://{}", self.user.address());
        let mut tokens = Vec::with_capacity(count);
        for i in 0..count {
            tokens.push(sign_up(http, &user_url, &format!("bench{i}")).await?);
        }
        let started = Instant::now();
        loop {
            let known: i64 = sqlx::query_scalar("SELECT count(*) FROM known_users")
                .fetch_one(self.booking.pool())
                .await?;
            if known as usize >= count {
                return Ok(tokens);
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("booking-service did not learn the users from UserRegistered".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deletes the run's streams, as its databases go with it.
    pub async fn delete_streams(&self) -> BenchResult<()> {
        let jetstream = async_nats::jetstream::new(async_nats::connect(&self.broker_url).await?);
        for kind in [
            StreamKind::Users,
            StreamKind::Bookings,
            StreamKind::Payments,
        ] {
            let _ = jetstream
                .delete_stream(self.namespace.stream_name(kind))
                .await;
        }
        Ok(())
    }
}

async fn sign_up(http: &reqwest::Client, user_url: &str, name: &str) -> BenchResult<String> {
    let registered = http
        .post(format!("{user_url}/api/users/register"))
        .json(&json!({
            "username": name, "email": format!("{name}@bench.example"),
            "password": "bench password 1", "fullName": "Bench User",
        }))
        .send()
        .await?;
    if registered.status().as_u16() != 201 {
        return Err(format!("register {name}: {}", registered.status()).into());
    }
    let login: Value = http
        .post(format!("{user_url}/api/users/login"))
        .json(&json!({ "username": name, "password": "bench password 1" }))
        .send()
        .await?
        .json()
        .await?;
    Ok(login["token"]
        .as_str()
        .ok_or("login without token")?
        .to_string())
}

/// Bookings through `POST /api/bookings`, the users taking turns.
pub struct HttpCreates {
    /// The client (keeps a connection per request in flight).
    pub http: reqwest::Client,
    /// booking-service's create URL.
    pub url: String,
    /// The users' bearer tokens.
    pub tokens: Vec<String>,
}

impl Creates for HttpCreates {
    async fn create(&self, index: usize, event_name: &str) -> bool {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.tokens[index % self.tokens.len()])
            .json(&json!({ "eventName": event_name, "ticketCount": 1, "totalAmount": "42.00" }))
            .send()
            .await;
        matches!(response, Ok(r) if r.status().as_u16() == 201)
    }
}

//! Test support: payment-service on a random port against a fresh PostgreSQL database and a
//! private event namespace, a JWKS endpoint for tokens, and event publishing helpers.

use async_nats::jetstream;
use payment_service::gateway::{PaymentGateway, SimulatedGateway, SimulatedGatewayConfig};
use payment_service::{Application, PaymentConfig};
use rust_decimal::Decimal;
use silo_kit::auth::{SigningKey, TokenIssuer};
use silo_kit::config::{BaseConfig, Secret};
use silo_kit::events::{BookingCreated, Envelope, Event, EventNamespace, StreamKind};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `probe` until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes JWKS for tokens it issues (payment-service only verifies tokens).
pub struct KeyServer {
    issuer: Arc<TokenIssuer>,
    url: String,
}

impl KeyServer {
    pub async fn start() -> Self {
        let issuer = Arc::new(TokenIssuer::new(
            SigningKey::generate(),
            vec![],
            chrono::Duration::hours(1),
        ));
        let jwks = issuer.jwks();
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { issuer, url }
    }

    pub fn token(&self, user: Uuid, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.issuer.issue(user, &roles).unwrap().0
    }
}

/// payment-service with its own database and namespace.
pub struct PaymentUnderTest {
    pub app: Application,
    pub gateway: Arc<dyn PaymentGateway>,
    pub namespace: EventNamespace,
    pub keys: KeyServer,
    pub jetstream: jetstream::Context,
    pub http: reqwest::Client,
    pub base: String,
    database: silo_testenv::TestDatabase,
}

impl PaymentUnderTest {
    /// With the simulated gateway declining above 10000.
    pub async fn start() -> (Self, Arc<SimulatedGateway>) {
        let gateway = Arc::new(SimulatedGateway::new(SimulatedGatewayConfig::default()));
        (Self::start_with(gateway.clone()).await, gateway)
    }

    pub async fn start_with(gateway: Arc<dyn PaymentGateway>) -> Self {
        let database = silo_testenv::TestDatabase::create().await;
        let keys = KeyServer::start().await;
        let namespace =
            EventNamespace::prefixed(format!("t{}", silo_testenv::unique_suffix())).unwrap();
        let config = PaymentConfig {
            base: BaseConfig {
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                database_url: Secret::new(database.url()),
                broker_url: Secret::new(silo_testenv::require("SILO_NATS_URL")),
                server: silo_kit::server::ServerLimits::default(),
            },
            user_service_url: keys.url.clone(),
            gateway: SimulatedGatewayConfig::default(),
            namespace: namespace.clone(),
            startup_timeout: std::time::Duration::from_secs(30),
        };
        let app = Application::build_with_gateway(config, gateway.clone())
            .await
            .unwrap();
        let jetstream = jetstream::new(silo_testenv::nats_client().await);
        for kind in [StreamKind::Bookings, StreamKind::Users] {
            namespace.ensure_stream(&jetstream, kind).await.unwrap();
        }
        let base = format!("http://{}", app.address());
        Self {
            app,
            gateway,
            namespace,
            keys,
            jetstream,
            http: reqwest::Client::new(),
            base,
            database,
        }
    }

    /// A pool on the service's database.
    pub fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy(self.database.url())
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Publishes `envelope` on its subject; `message_id` is the JetStream de-duplication key
    /// (normally the event id; a different one makes the broker deliver a duplicate).
    pub async fn publish_as<E: Event>(&self, envelope: &Envelope, message_id: &str) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id);
        self.jetstream
            .publish_with_headers(
                self.namespace.subject_of::<E>(),
                headers,
                envelope.to_vec().unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn publish<E: Event>(&self, event: &E) -> Envelope {
        let envelope = Envelope::new(event, "test").unwrap();
        self.publish_as::<E>(&envelope, &envelope.event_id.to_string())
            .await;
        envelope
    }

    /// Every event on payment-service's stream.
    pub async fn payment_events(&self) -> Vec<Envelope> {
        let Ok(mut stream) = self
            .jetstream
            .get_stream(self.namespace.stream_name(StreamKind::Payments))
            .await
        else {
            return Vec::new();
        };
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut events = Vec::new();
        for sequence in 1..=last {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                events.push(Envelope::from_slice(&message.payload).unwrap());
            }
        }
        events
    }

    /// Waits until payment-service's consumer of the bookings stream has acknowledged
    /// everything delivered to it.
    pub async fn wait_until_bookings_consumer_drained(&self) {
        eventually("the bookings consumer to drain", WAIT, || async {
            let info = self
                .jetstream
                .get_stream(self.namespace.stream_name(StreamKind::Bookings))
                .await
                .unwrap()
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                    payment_service::consumers::CONSUMER_NAME,
                )
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .clone();
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        })
        .await;
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> (u16, serde_json::Value) {
        let response = request.bearer_auth(token).send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.call(self.http.get(self.url(path)), token).await
    }

    pub async fn post(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.call(self.http.post(self.url(path)), token).await
    }
}

/// A `BookingCreated` for a fresh booking of `user`.
pub fn booking_created(user: Uuid, amount: i64) -> BookingCreated {
    BookingCreated {
        booking_id: Uuid::new_v4(),
        user_id: user,
        user_email: "ada@example.com".into(),
        event_name: "Concert".into(),
        ticket_count: 2,
        total_amount: Decimal::from(amount),
        currency: "USD".into(),
    }
}

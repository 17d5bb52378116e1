//! Test support: booking-service on a random port against a fresh database and a private
//! event namespace, a stand-in for user-service's endpoints, and polling helpers.

use async_nats::jetstream;
use booking_service::{Application, BookingConfig};
use chrono::Utc;
use silo_kit::auth::{Claims, ISSUER, SigningKey, TokenIssuer};
use silo_kit::config::{BaseConfig, Secret};
use silo_kit::events::{Envelope, EventNamespace, StreamKind};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A namespace no other test uses.
pub fn private_namespace() -> EventNamespace {
    EventNamespace::prefixed(format!("t{}", silo_testenv::unique_suffix())).unwrap()
}

/// The URL of the shared NATS server.
pub fn nats_url() -> String {
    silo_testenv::require("SILO_NATS_URL")
}

/// Local base settings on a random port.
pub fn base_config(database_url: &str, broker_url: &str) -> BaseConfig {
    BaseConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: Secret::new(database_url),
        broker_url: Secret::new(broker_url),
        server: silo_kit::server::ServerLimits::default(),
    }
}

/// Polls `probe` until it returns `Some`, for at most `limit`; panics naming `what` otherwise.
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

/// Every event in `kind`'s stream of `namespace` (dead letters excluded), in stream order.
pub async fn stream_events(namespace: &EventNamespace, kind: StreamKind) -> Vec<Envelope> {
    let context = jetstream::new(silo_testenv::nats_client().await);
    stream_events_on(&context, namespace, kind).await
}

/// Every event in `kind`'s stream of `namespace` on the server of `context`.
pub async fn stream_events_on(
    context: &jetstream::Context,
    namespace: &EventNamespace,
    kind: StreamKind,
) -> Vec<Envelope> {
    let Ok(mut stream) = context.get_stream(namespace.stream_name(kind)).await else {
        return Vec::new();
    };
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut events = Vec::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        if message.subject.ends_with(".dlq") {
            continue;
        }
        events.push(Envelope::from_slice(&message.payload).unwrap());
    }
    events
}

/// A user as the stand-in knows it.
#[derive(Debug, Clone)]
pub struct StandInUser {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
}

/// Serves user-service's endpoints that booking-service calls (JWKS, exists, profile) from
/// memory, and mints tokens for its users; stoppable to simulate an outage.
pub struct UserServiceStandIn {
    address: SocketAddr,
    issuer: Arc<TokenIssuer>,
    users: Arc<Mutex<HashMap<Uuid, StandInUser>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl UserServiceStandIn {
    pub async fn start() -> Self {
        use axum::Json;
        use axum::extract::{Path, State};
        use axum::http::StatusCode;
        use axum::routing::get;
        type Users = Arc<Mutex<HashMap<Uuid, StandInUser>>>;
        let issuer = Arc::new(TokenIssuer::new(
            SigningKey::generate(),
            vec![],
            chrono::Duration::hours(1),
        ));
        let users: Users = Arc::default();
        let jwks = issuer.jwks();
        let router = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    let jwks = jwks.clone();
                    async move { Json(jwks) }
                }),
            )
            .route(
                "/api/users/{id}/exists",
                get(
                    |State(users): State<Users>, Path(id): Path<Uuid>| async move {
                        if users.lock().unwrap().contains_key(&id) {
                            (StatusCode::OK, Json(serde_json::json!({ "exists": true })))
                        } else {
                            (StatusCode::NOT_FOUND, user_not_found())
                        }
                    },
                ),
            )
            .route(
                "/api/users/{id}",
                get(
                    |State(users): State<Users>, Path(id): Path<Uuid>| async move {
                        match users.lock().unwrap().get(&id) {
                            Some(u) => (
                                StatusCode::OK,
                                Json(serde_json::json!({
                                    "id": u.id, "username": "u", "email": u.email,
                                    "fullName": u.full_name, "roles": ["user"],
                                    "createdAt": Utc::now(),
                                })),
                            ),
                            None => (StatusCode::NOT_FOUND, user_not_found()),
                        }
                    },
                ),
            )
            .with_state(users.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            issuer,
            users,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Adds a user and returns it with a token for it.
    pub fn add_user(&self, email: &str) -> (StandInUser, String) {
        let user = StandInUser {
            id: Uuid::new_v4(),
            email: email.to_string(),
            full_name: format!("Full {email}"),
        };
        self.users.lock().unwrap().insert(user.id, user.clone());
        let token = self.token_for(user.id, &["user"]);
        (user, token)
    }

    /// A valid token for any id (the user need not exist).
    pub fn token_for(&self, id: Uuid, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.issuer.issue(id, &roles).unwrap().0
    }

    /// A token that expired an hour ago.
    pub fn expired_token_for(&self, id: Uuid) -> String {
        let now = Utc::now().timestamp();
        self.issuer
            .sign(&Claims {
                sub: id,
                roles: vec!["user".into()],
                exp: now - 3600,
                iat: now - 7200,
                iss: ISSUER.to_string(),
            })
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A token signed by a key user-service never published.
pub fn forged_token_for(id: Uuid) -> String {
    TokenIssuer::new(SigningKey::generate(), vec![], chrono::Duration::hours(1))
        .issue(id, &["admin".to_string()])
        .unwrap()
        .0
}

/// booking-service with its own database, a private namespace and a user-service stand-in.
pub struct BookingUnderTest {
    pub app: Application,
    pub users: UserServiceStandIn,
    pub namespace: EventNamespace,
    pub http: reqwest::Client,
    pub base: String,
    /// Held so the database lives as long as the service.
    pub _database: silo_testenv::TestDatabase,
}

impl BookingUnderTest {
    pub async fn start() -> Self {
        let database = silo_testenv::TestDatabase::create().await;
        let users = UserServiceStandIn::start().await;
        let namespace = private_namespace();
        let app = Application::build(BookingConfig {
            base: base_config(database.url(), &nats_url()),
            user_service_url: users.url(),
            namespace: namespace.clone(),
            startup_timeout: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
        let base = format!("http://{}", app.address());
        Self {
            app,
            users,
            namespace,
            http: reqwest::Client::new(),
            base,
            _database: database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/bookings` with `body` as `token`.
    pub async fn create(&self, token: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/bookings"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_empty(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// A valid create-booking body.
pub fn booking_body(amount: &str) -> serde_json::Value {
    serde_json::json!({ "eventName": "Concert", "ticketCount": 2, "totalAmount": amount })
}

/// user-service's 404 for an unknown user.
fn user_not_found() -> axum::Json<serde_json::Value> {
    let problem = silo_kit::error::ApiError::not_found("There is no user with this id.");
    axum::Json(serde_json::to_value(problem.to_problem()).unwrap_or_default())
}

/// The type URI of the problem `slug`.
pub fn problem(slug: &str) -> String {
    format!("https://silo.dev/problems/{slug}")
}

/// The fields a problem's `errors` name, in order.
pub fn fields_of(problem: &serde_json::Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

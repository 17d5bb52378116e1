//! Spawning user-service for a test and talking to it.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use silo_kit::auth::{Claims, SigningKey, TokenIssuer};
use silo_kit::config::{BaseConfig, Secret};
use silo_kit::events::{Envelope, EventNamespace, StreamKind};
use silo_testenv::TestDatabase;
use sqlx::PgPool;
use std::time::Duration;
use user_service::{Application, UserConfig};
use uuid::Uuid;

/// A running user-service with its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub namespace: EventNamespace,
    database: Option<TestDatabase>,
    app: Option<Application>,
}

/// The configuration a test uses for `database`.
pub fn test_config(database: &TestDatabase, namespace: &EventNamespace) -> UserConfig {
    UserConfig {
        base: BaseConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: Secret::new(database.url()),
            broker_url: Secret::new(silo_testenv::require("SILO_NATS_URL")),
            server: silo_kit::server::ServerLimits::default(),
        },
        namespace: namespace.clone(),
        token_lifetime: Duration::from_secs(3600),
        signing_key: None,
        keys_reload: Duration::from_secs(10),
        startup_timeout: Duration::from_secs(10),
        json_logs: false,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The NATS server is shared: remove this test's stream (best effort).
        let stream = self.namespace.stream_name(StreamKind::Users);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let client = async_nats::connect(silo_testenv::require("SILO_NATS_URL"))
                    .await
                    .ok()?;
                async_nats::jetstream::new(client)
                    .delete_stream(stream)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

impl TestApp {
    /// Starts user-service on a fresh database.
    pub async fn spawn() -> Self {
        let database = TestDatabase::create().await;
        let namespace =
            EventNamespace::prefixed(format!("u{}", silo_testenv::unique_suffix())).unwrap();
        Self::spawn_on(database, namespace).await
    }

    /// Starts user-service on an existing database.
    pub async fn spawn_on(database: TestDatabase, namespace: EventNamespace) -> Self {
        let app = Application::build(test_config(&database, &namespace))
            .await
            .expect("user-service starts");
        Self {
            address: format!("http://{}", app.address()),
            client: reqwest::Client::new(),
            pool: app.pool().clone(),
            namespace,
            database: Some(database),
            app: Some(app),
        }
    }

    /// Stops the service gracefully; returns the database for a restart.
    pub async fn stop(mut self) -> (TestDatabase, EventNamespace) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.pool.close().await;
        (self.database.take().unwrap(), self.namespace.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: String) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut request = self.client.patch(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Registers `username` (email `<username>@example.com`, password `password-<username>`).
    pub async fn register(&self, username: &str) -> Value {
        let response = self
            .post_json("/api/users/register", &registration(username))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Logs in; returns the token.
    pub async fn login(&self, username: &str) -> String {
        let response = self
            .post_json(
                "/api/users/login",
                &json!({"username": username, "password": format!("password-{username}")}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// Registers and logs in; returns (user id, token).
    pub async fn signed_up(&self, username: &str) -> (Uuid, String) {
        let user = self.register(username).await;
        let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
        (id, self.login(username).await)
    }

    /// Grants the admin role (there is no API for it: operators do it in SQL).
    pub async fn make_admin(&self, id: Uuid) {
        sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, 2)")
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// The service's current signing key, read from its database.
    pub async fn signing_key(&self) -> SigningKey {
        let der: Vec<u8> = sqlx::query_scalar(
            "SELECT private_key FROM signing_keys ORDER BY created_at DESC LIMIT 1",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        SigningKey::from_pkcs8_der(&der).unwrap()
    }

    /// Events of the USERS stream, in order, once `count` have arrived.
    pub async fn published_events(&self, count: usize) -> Vec<Envelope> {
        let jetstream = silo_kit::broker::jetstream(silo_testenv::nats_client().await);
        let stream_name = self.namespace.stream_name(StreamKind::Users);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut stream = jetstream.get_stream(&stream_name).await.unwrap();
            let stored = stream.info().await.unwrap().state.messages;
            if stored as usize >= count {
                let mut events = Vec::new();
                for sequence in 1..=stored {
                    let message = stream.get_raw_message(sequence).await.unwrap();
                    events.push(Envelope::from_slice(&message.payload).unwrap());
                }
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {stored} of {count} events published"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A valid registration body for `username`.
pub fn registration(username: &str) -> Value {
    json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "password": format!("password-{username}"),
        "fullName": format!("{username} Example"),
    })
}

/// Asserts that `response` is an RFC 9457 problem of `status` and type
/// `https://silo.dev/problems/<slug>`, with a title and a detail; returns the problem.
pub async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("https://silo.dev/problems/{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16(), "{body}");
    for member in ["title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    body
}

/// The fields a problem's `errors` name, in order.
pub fn fields_of(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `WWW-Authenticate` challenge of a response, empty when absent.
pub fn challenge_of(response: &Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A token signed by `key` with arbitrary claims.
pub fn token_with(key: &SigningKey, sub: Uuid, roles: &[&str], exp_offset_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let issuer = TokenIssuer::new(key.clone(), vec![], chrono::Duration::hours(1));
    issuer
        .sign(&Claims {
            sub,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            exp: now + exp_offset_secs,
            iat: now,
            iss: silo_kit::auth::ISSUER.to_string(),
        })
        .unwrap()
}

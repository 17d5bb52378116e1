//! silo-kit: what every booking-system service shares.
//!
//! Module map:
//! - [`config`]: typed configuration from the environment ([`config::Env`],
//!   [`config::BaseConfig`] with `LISTEN_ADDR`/`DATABASE_URL`/`BROKER_URL`, [`config::Secret`]).
//! - [`error`]: [`error::ApiError`], answered as an RFC 9457 problem (`application/problem+json`)
//!   of a [`error::ProblemType`] (stable `https://silo.dev/problems/<slug>` URI), listing
//!   every invalid field.
//! - [`fields`]: [`fields::FromBody`] / [`fields::FromQuery`] request types read field by field,
//!   every problem recorded; amounts read as exact decimals from the JSON text.
//! - [`extract`]: `Json`, `Path`, `Query` extractors whose rejections are problems in plain words.
//! - [`events`]: [`events::Envelope`], every event payload (implementing [`events::Event`]),
//!   [`events::EventNamespace`] (stream names/subjects, optionally prefixed for tests) and
//!   `ensure_stream`.
//! - [`correlation`]: [`correlation::CorrelationId`] and the `X-Correlation-ID` header name.
//! - [`outbox`]: [`outbox::OutboxStore`] trait, the shared [`outbox::Relay`];
//!   [`outbox::postgres`] (`enqueue(&mut *tx, &event, &correlation_id)`, `PgOutbox`) and
//!   [`outbox::mongo`] (`enqueue(&db, &mut session, &event, &correlation_id)` inside a
//!   multi-document transaction, `MongoOutbox`, `ensure_indexes`).
//! - [`consumer`]: durable pull [`consumer::Consumer`] per (service, stream) driving a
//!   [`consumer::MessageHandler`]: ack / NAK with delay / dead-letter (+ `<subject>.dlq`).
//! - [`inbox`]: [`inbox::postgres::PgInbox`] wraps a [`inbox::postgres::PgEventHandler`]
//!   (effect + inbox row in one transaction), [`inbox::postgres::PgDeadLetters`];
//!   [`inbox::mongo`] the same for MongoDB (`MongoInbox`, `MongoEventHandler`, `MongoDeadLetters`).
//! - [`auth`]: [`auth::AuthUser`] extractor (needs `TokenVerifier: FromRef<State>`),
//!   [`auth::TokenVerifier`] (`remote(USER_SERVICE_URL)` JWKS cache or `fixed`),
//!   [`auth::TokenIssuer`] / [`auth::SigningKey`] (user-service signs; tests mint tokens).
//! - [`postgres`]: `connect` with bounded retry, `migrate(pool, sqlx::migrate!())` which also
//!   applies the kit's tables (`outbox`, `inbox`, `dead_letters`).
//! - [`broker`]: NATS `connect` with bounded retry, `jetstream` context.
//! - [`http`]: [`http::service_router`] adds `/healthz`, `/readyz`, `/metrics`, body limit,
//!   correlation + metrics middleware, problem 404/405; [`server::serve`] with timeouts, a concurrency limit and a two-stage shutdown (drain, then a bounded wait).
//! - [`openapi`]: [`openapi::complete`] adds the shared parts (operational endpoints, problem
//!   responses, bearer scheme) to a service's generated OpenAPI 3.1 description; test helpers
//!   that hold a router and its request types to it.
//! - [`readiness`]: [`readiness::Readiness`] with `PostgresCheck`, `NatsCheck`, `MongoCheck`.
//! - [`telemetry`]: `init(service, json)` logging, correlation middleware, `CorrelationId` extractor.
//! - [`metrics`]: [`metrics::Metrics`] (Prometheus registry and the kit's families).
//! - [`service`]: `bind(addr)` and [`service::RunningService`] (HTTP server + background tasks,
//!   `address()`, `shutdown_handle()`, `run_until_stopped()`, `stop()`).
//! - [`shutdown`]: [`shutdown::Shutdown`], fired on SIGTERM.
//! - [`retry`]: [`retry::RetryPolicy`] for start-up connections.
//! - [`startup`]: what every service's start-up shares: [`startup::Launch`] (broker and own
//!   stream, PostgreSQL with migrations, relay/consumer/task spawning, readiness, `serve`)
//!   and `run_main` (a binary's whole `main`).

pub mod auth;
pub mod broker;
pub mod config;
pub mod consumer;
pub mod correlation;
pub mod error;
pub mod events;
pub mod extract;
pub mod fields;
pub mod http;
pub mod inbox;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod postgres;
pub mod readiness;
pub mod retry;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod startup;
pub mod telemetry;

//! Building and running booking-service: database, broker, outbox relay, consumers and the
//! HTTP server.

use crate::api::{self, ApiState};
use crate::config::BookingConfig;
use crate::consumers::{CONSUMER_NAME, PaymentEvents, UserEvents};
use crate::repository::BookingRepository;
use crate::users::UserServiceClient;
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::{self, BrokerError};
use silo_kit::consumer::{Consumer, ConsumerConfig};
use silo_kit::events::StreamKind;
use silo_kit::http::{Operations, serve, service_router};
use silo_kit::inbox::postgres::{PgDeadLetters, PgInbox};
use silo_kit::metrics::Metrics;
use silo_kit::outbox::postgres::PgOutbox;
use silo_kit::outbox::{Relay, RelayConfig};
use silo_kit::postgres::DatabaseError;
use silo_kit::readiness::{NatsCheck, PostgresCheck, Readiness};
use silo_kit::retry::RetryPolicy;
use silo_kit::shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use tokio::task::JoinHandle;

/// Connections of the PostgreSQL pool.
const POOL_SIZE: u32 = 16;
/// Events handled at once per consumer: commits wait on the disk, so overlapping them (group
/// commit) is what lets the saga keep up; the pool bounds the database work.
const CONSUMER_CONCURRENCY: usize = 32;

fn consumer_config(stream: StreamKind) -> ConsumerConfig {
    ConsumerConfig {
        concurrency: CONSUMER_CONCURRENCY,
        ..ConsumerConfig::new(CONSUMER_NAME, stream)
    }
}

/// booking-service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// PostgreSQL unreachable or migrations failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// NATS unreachable or the stream could not be created.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// `USER_SERVICE_URL` could not be used.
    #[error("USER_SERVICE_URL: {0}")]
    UserService(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        reason: String,
    },
}

/// A running booking-service.
#[derive(Debug)]
pub struct Application {
    address: SocketAddr,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    pool: PgPool,
}

impl Application {
    /// Connects, migrates, starts the relay, the consumers and the HTTP server.
    pub async fn build(config: BookingConfig) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        let shutdown = Shutdown::new();
        let retry = RetryPolicy::within(config.startup_timeout);
        let pool = silo_kit::postgres::connect(&config.base.database_url, POOL_SIZE, retry).await?;
        silo_kit::postgres::migrate(&pool, sqlx::migrate!("./migrations")).await?;
        let client = broker::connect(&config.base.broker_url, "booking-service", retry).await?;
        let jetstream = broker::jetstream(client.clone());
        let namespace = config.namespace.clone();
        namespace
            .ensure_stream(&jetstream, StreamKind::Bookings)
            .await
            .map_err(|e| BrokerError::Stream {
                stream: namespace.stream_name(StreamKind::Bookings),
                reason: e.to_string(),
            })?;
        let relay = Relay::new(
            PgOutbox::new(pool.clone()),
            jetstream.clone(),
            namespace.clone(),
            RelayConfig::default(),
            metrics.clone(),
        );
        let payments = Consumer::new(
            jetstream.clone(),
            namespace.clone(),
            consumer_config(StreamKind::Payments),
            PgInbox::new(pool.clone(), CONSUMER_NAME, PaymentEvents),
            PgDeadLetters::new(pool.clone()),
            metrics.clone(),
        );
        let users = Consumer::new(
            jetstream,
            namespace,
            consumer_config(StreamKind::Users),
            PgInbox::new(pool.clone(), CONSUMER_NAME, UserEvents),
            PgDeadLetters::new(pool.clone()),
            metrics.clone(),
        );
        let user_service = UserServiceClient::new(&config.user_service_url)
            .map_err(|e| StartupError::UserService(e.to_string()))?;
        let state = ApiState {
            repository: BookingRepository::new(pool.clone()),
            users: user_service,
            verifier: TokenVerifier::remote(&config.user_service_url),
        };
        let listener = tokio::net::TcpListener::bind(config.base.listen_addr)
            .await
            .map_err(|e| StartupError::Bind {
                address: config.base.listen_addr,
                reason: e.to_string(),
            })?;
        let address = listener.local_addr().map_err(|e| StartupError::Bind {
            address: config.base.listen_addr,
            reason: e.to_string(),
        })?;
        let readiness = Readiness::new()
            .with(PostgresCheck(pool.clone()))
            .with(NatsCheck(client));
        let router = service_router(
            api::routes().with_state(state),
            Operations::new(metrics.clone(), readiness),
        );
        let tasks = vec![
            tokio::spawn(relay.run(shutdown.clone())),
            tokio::spawn(payments.run(shutdown.clone())),
            tokio::spawn(users.run(shutdown.clone())),
            tokio::spawn(serve_logged(listener, router, shutdown.clone())),
        ];
        tracing::info!(%address, "booking-service listening");
        Ok(Self {
            address,
            shutdown,
            tasks,
            pool,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The database pool (tests inspect it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A handle that stops the service when triggered (binaries wire it to SIGTERM).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until every part has stopped (after the shutdown signal).
    pub async fn run_until_stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops taking requests, finishes in-flight work, and waits for it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.run_until_stopped().await;
    }
}

async fn serve_logged(listener: tokio::net::TcpListener, router: axum::Router, shutdown: Shutdown) {
    if let Err(error) = serve(listener, router, shutdown).await {
        tracing::error!(error = %error, "HTTP server failed");
    }
}

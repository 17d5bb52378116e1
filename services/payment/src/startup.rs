//! Building and running payment-service: store (by `DATABASE_URL` scheme), broker, outbox
//! relay, consumers and the HTTP server.

use crate::api::{self, ApiState};
use crate::charging::Charging;
use crate::config::PaymentConfig;
use crate::consumers::{BookingEvents, CONSUMER_NAME, StoreDeadLetters, UserEvents};
use crate::gateway::{PaymentGateway, SimulatedGateway};
use crate::store::{MongoPaymentStore, PaymentStore, PgPaymentStore, StoreError};
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::{self, BrokerError};
use silo_kit::consumer::{Consumer, ConsumerConfig};
use silo_kit::events::StreamKind;
use silo_kit::http::{Operations, serve, service_router};
use silo_kit::metrics::Metrics;
use silo_kit::outbox::mongo::MongoOutbox;
use silo_kit::outbox::postgres::PgOutbox;
use silo_kit::outbox::{Relay, RelayConfig};
use silo_kit::postgres::DatabaseError;
use silo_kit::readiness::{MongoCheck, NatsCheck, PostgresCheck, Readiness};
use silo_kit::retry::RetryPolicy;
use silo_kit::shutdown::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
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

/// payment-service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `DATABASE_URL` names neither PostgreSQL nor MongoDB.
    #[error(
        "DATABASE_URL must start with postgres://, postgresql://, mongodb:// or mongodb+srv://"
    )]
    UnsupportedDatabase,
    /// A MongoDB `DATABASE_URL` must name its database.
    #[error("DATABASE_URL for MongoDB must name the database (mongodb://host/<database>)")]
    MongoDatabaseMissing,
    /// PostgreSQL unreachable or migrations failed.
    #[error(transparent)]
    Postgres(#[from] DatabaseError),
    /// MongoDB unreachable.
    #[error("MongoDB unreachable after {attempts} attempts: {reason}")]
    MongoUnreachable {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The store could not be prepared (migrations, indexes).
    #[error("payment store: {0}")]
    Store(#[from] StoreError),
    /// NATS unreachable or the stream could not be created.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        reason: String,
    },
}

/// A running payment-service.
pub struct Application {
    address: SocketAddr,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    store: Arc<dyn PaymentStore>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish()
    }
}

fn is_mongo(url: &str) -> bool {
    url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Application {
    /// Starts the service with the simulated gateway of `config`.
    pub async fn build(config: PaymentConfig) -> Result<Self, StartupError> {
        let gateway = Arc::new(SimulatedGateway::new(config.gateway.clone()));
        Self::build_with_gateway(config, gateway).await
    }

    /// Starts the service charging through `gateway`.
    pub async fn build_with_gateway(
        config: PaymentConfig,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Result<Self, StartupError> {
        let url = config.base.database_url.expose();
        if !is_postgres(url) && !is_mongo(url) {
            return Err(StartupError::UnsupportedDatabase);
        }
        let metrics = Metrics::new();
        let shutdown = Shutdown::new();
        let retry = RetryPolicy::within(config.startup_timeout);
        let client = broker::connect(&config.base.broker_url, "payment-service", retry).await?;
        let jetstream = broker::jetstream(client.clone());
        config
            .namespace
            .ensure_stream(&jetstream, StreamKind::Payments)
            .await
            .map_err(|e| BrokerError::Stream {
                stream: config.namespace.stream_name(StreamKind::Payments),
                reason: e.to_string(),
            })?;
        let mut tasks = Vec::new();
        let relay_config = RelayConfig::default();
        let (store, readiness): (Arc<dyn PaymentStore>, Readiness) = if is_postgres(url) {
            let pool =
                silo_kit::postgres::connect(&config.base.database_url, POOL_SIZE, retry).await?;
            let store = PgPaymentStore::connect(pool.clone()).await?;
            let readiness = Readiness::new().with(PostgresCheck(pool.clone()));
            let relay = Relay::new(
                PgOutbox::new(pool),
                jetstream.clone(),
                config.namespace.clone(),
                relay_config,
                metrics.clone(),
            );
            tasks.push(tokio::spawn(relay.run(shutdown.clone())));
            (Arc::new(store), readiness)
        } else {
            let store = connect_mongo(url, retry).await?;
            let readiness = Readiness::new().with(MongoCheck(store.database().clone()));
            let relay = Relay::new(
                MongoOutbox::new(store.database()),
                jetstream.clone(),
                config.namespace.clone(),
                relay_config,
                metrics.clone(),
            );
            tasks.push(tokio::spawn(relay.run(shutdown.clone())));
            (Arc::new(store), readiness)
        };
        let charging = Charging::new(store.clone(), gateway);
        let bookings = Consumer::new(
            jetstream.clone(),
            config.namespace.clone(),
            consumer_config(StreamKind::Bookings),
            BookingEvents::new(charging.clone()),
            StoreDeadLetters(store.clone()),
            metrics.clone(),
        );
        let users = Consumer::new(
            jetstream.clone(),
            config.namespace.clone(),
            consumer_config(StreamKind::Users),
            UserEvents::new(charging.clone()),
            StoreDeadLetters(store.clone()),
            metrics.clone(),
        );
        tasks.push(tokio::spawn(bookings.run(shutdown.clone())));
        tasks.push(tokio::spawn(users.run(shutdown.clone())));
        let verifier = TokenVerifier::remote(&config.user_service_url);
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
        let router = service_router(
            api::routes().with_state(ApiState { charging, verifier }),
            Operations::new(metrics.clone(), readiness.with(NatsCheck(client))),
        );
        tasks.push(tokio::spawn(serve_logged(
            listener,
            router,
            shutdown.clone(),
        )));
        tracing::info!(%address, "payment-service listening");
        Ok(Self {
            address,
            shutdown,
            tasks,
            store,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> &Arc<dyn PaymentStore> {
        &self.store
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

async fn connect_mongo(url: &str, retry: RetryPolicy) -> Result<MongoPaymentStore, StartupError> {
    let options = mongodb::options::ClientOptions::parse(url)
        .await
        .map_err(|_| StartupError::UnsupportedDatabase)?;
    let database = options
        .default_database
        .clone()
        .ok_or(StartupError::MongoDatabaseMissing)?;
    retry
        .run("mongodb", || MongoPaymentStore::connect(url, &database))
        .await
        .map_err(|(error, attempts)| StartupError::MongoUnreachable {
            attempts,
            reason: error.to_string(),
        })
}

async fn serve_logged(listener: tokio::net::TcpListener, router: axum::Router, shutdown: Shutdown) {
    if let Err(error) = serve(listener, router, shutdown).await {
        tracing::error!(error = %error, "HTTP server failed");
    }
}

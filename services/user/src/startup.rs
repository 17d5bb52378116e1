//! Building and running user-service: database, broker, signing keys, outbox
//! relay and the HTTP server.

use crate::api::{self, ApiState};
use crate::config::UserConfig;
use crate::keys::{self, KeyStoreError};
use crate::repository::UserRepository;
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::{self, BrokerError};
use silo_kit::events::StreamKind;
use silo_kit::http::{Operations, service_router};
use silo_kit::metrics::Metrics;
use silo_kit::outbox::postgres::PgOutbox;
use silo_kit::outbox::{Relay, RelayConfig};
use silo_kit::postgres::DatabaseError;
use silo_kit::readiness::{NatsCheck, PostgresCheck, Readiness};
use silo_kit::retry::RetryPolicy;
use silo_kit::service::{BindError, RunningService, bind};
use silo_kit::shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;

/// Connections of the PostgreSQL pool.
const POOL_SIZE: u32 = 16;

/// user-service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// PostgreSQL unreachable or migrations failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// NATS unreachable or the stream could not be created.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The signing keys could not be loaded.
    #[error("signing keys: {0}")]
    Keys(#[from] KeyStoreError),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A running user-service.
#[derive(Debug)]
pub struct Application {
    service: RunningService,
    pool: PgPool,
}

impl Application {
    /// Connects (with bounded retry), migrates, loads keys, starts the relay and the HTTP server.
    pub async fn build(config: UserConfig) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        let shutdown = Shutdown::new();
        let retry = RetryPolicy::within(config.startup_timeout);
        let pool = silo_kit::postgres::connect(&config.base.database_url, POOL_SIZE, retry).await?;
        silo_kit::postgres::migrate(&pool, sqlx::migrate!("./migrations")).await?;
        let client = broker::connect(&config.base.broker_url, "user-service", retry).await?;
        let jetstream = broker::jetstream(client.clone());
        let namespace = config.namespace.clone();
        namespace
            .ensure_stream(&jetstream, StreamKind::Users)
            .await
            .map_err(|e| BrokerError::Stream {
                stream: namespace.stream_name(StreamKind::Users),
                reason: e.to_string(),
            })?;
        let lifetime =
            chrono::Duration::from_std(config.token_lifetime).unwrap_or(chrono::Duration::hours(1));
        let issuer = keys::load_issuer(&pool, config.signing_key.clone(), lifetime).await?;
        let verifier = TokenVerifier::fixed(&issuer.jwks());
        let relay = Relay::new(
            PgOutbox::new(pool.clone()),
            jetstream,
            namespace,
            RelayConfig::default(),
            metrics.clone(),
        );
        let state = ApiState {
            repository: UserRepository::new(pool.clone()),
            issuer: Arc::new(issuer),
            verifier,
            hasher: crate::password::Hasher::for_this_machine(),
        };
        let (listener, address) = bind(config.base.listen_addr).await?;
        let readiness = Readiness::new()
            .with(PostgresCheck(pool.clone()))
            .with(NatsCheck(client));
        let router = service_router(
            api::routes().with_state(state),
            Operations::new(metrics, readiness),
        );
        let relay_task = tokio::spawn(relay.run(shutdown.clone()));
        let service = RunningService::start(listener, address, router, shutdown, vec![relay_task]);
        tracing::info!(%address, "user-service listening");
        Ok(Self { service, pool })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.service.address()
    }

    /// The database pool (tests inspect it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A handle that stops the service when triggered (the binary wires it to SIGTERM).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.service.shutdown_handle()
    }

    /// Waits until the HTTP server and the relay have stopped.
    pub async fn run_until_stopped(self) {
        self.service.run_until_stopped().await;
    }

    /// Stops taking requests, finishes in-flight work and the current outbox batch.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

//! Building and running user-service: database, broker, signing keys, outbox
//! relay and the HTTP server.

use crate::api::{self, ApiState};
use crate::config::UserConfig;
use crate::keys::{self, KeyStoreError};
use crate::repository::UserRepository;
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::{self, BrokerError};
use silo_kit::events::StreamKind;
use silo_kit::http::{Operations, serve, service_router};
use silo_kit::metrics::Metrics;
use silo_kit::outbox::postgres::PgOutbox;
use silo_kit::outbox::{Relay, RelayConfig};
use silo_kit::postgres::DatabaseError;
use silo_kit::readiness::{NatsCheck, PostgresCheck, Readiness};
use silo_kit::retry::RetryPolicy;
use silo_kit::shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

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
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        reason: String,
    },
}

/// A running user-service.
#[derive(Debug)]
pub struct Application {
    address: SocketAddr,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
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
            Operations::new(metrics, readiness),
        );
        let tasks = vec![
            tokio::spawn(relay.run(shutdown.clone())),
            tokio::spawn(serve_logged(listener, router, shutdown.clone())),
        ];
        tracing::info!(%address, "user-service listening");
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

    /// A handle that stops the service when triggered (the binary wires it to SIGTERM).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until the HTTP server and the relay have stopped.
    pub async fn run_until_stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops taking requests, finishes in-flight work and the current outbox batch.
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

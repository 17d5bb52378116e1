//! Building and running user-service: database, broker, signing keys, outbox
//! relay and the HTTP server.

use crate::api::{self, ApiState};
use crate::config::UserConfig;
use crate::keys::{self, KeyStoreError};
use crate::repository::UserRepository;
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::BrokerError;
use silo_kit::events::StreamKind;
use silo_kit::postgres::DatabaseError;
use silo_kit::service::{BindError, RunningService};
use silo_kit::startup::{Launch, ServiceIdentity};
use sqlx::PgPool;
use std::ops::Deref;
use std::sync::Arc;

/// user-service's name and the stream it produces.
pub const SERVICE: ServiceIdentity = ServiceIdentity {
    name: "user-service",
    produces: StreamKind::Users,
};

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

/// A running user-service: its [`RunningService`] (address, shutdown, stop) and its pool.
#[derive(Debug)]
pub struct Application {
    service: RunningService,
    pool: PgPool,
}

impl Application {
    /// Connects (with bounded retry), migrates, loads keys, starts the relay and the HTTP server.
    pub async fn build(config: UserConfig) -> Result<Self, StartupError> {
        let timeout = config.startup_timeout;
        let mut launch =
            Launch::connect(&SERVICE, &config.base, &config.namespace, timeout).await?;
        let pool = launch.postgres(sqlx::migrate!("./migrations")).await?;
        let lifetime =
            chrono::Duration::from_std(config.token_lifetime).unwrap_or(chrono::Duration::hours(1));
        let issuer =
            Arc::new(keys::load_issuer(&pool, config.signing_key.clone(), lifetime).await?);
        let verifier = TokenVerifier::fixed(&issuer.jwks());
        if config.signing_key.is_none() {
            let (pool, issuer, verifier) = (pool.clone(), issuer.clone(), verifier.clone());
            let interval = config.keys_reload;
            launch.spawn(move |shutdown| {
                keys::keep_keys_current(pool, issuer, verifier, interval, shutdown)
            });
        }
        let state = ApiState {
            repository: UserRepository::new(pool.clone()),
            issuer,
            verifier,
            hasher: crate::password::Hasher::for_this_machine(),
        };
        let routes = api::routes().with_state(state);
        let service = launch.serve(routes).await?;
        Ok(Self { service, pool })
    }

    /// The database pool (tests inspect it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The application is its running service plus what tests inspect: `address()`,
/// `shutdown_handle()`, `run_until_stopped()` and `stop()` come from [`RunningService`].
impl Deref for Application {
    type Target = RunningService;

    fn deref(&self) -> &RunningService {
        &self.service
    }
}

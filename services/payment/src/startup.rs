//! Building and running payment-service: store (by `DATABASE_URL` scheme), broker, outbox
//! relay, consumers and the HTTP server.

use crate::api::{self, ApiState};
use crate::charging::Charging;
use crate::config::PaymentConfig;
use crate::consumers::{BookingEvents, CONSUMER_NAME, StoreDeadLetters, UserEvents};
use crate::gateway::{PaymentGateway, SimulatedGateway};
use crate::recovery::{self, RecoveryPolicy};
use crate::store::{MongoPaymentStore, PaymentStore, PgPaymentStore, StoreError};
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::BrokerError;
use silo_kit::events::StreamKind;
use silo_kit::outbox::mongo::MongoOutbox;
use silo_kit::postgres::DatabaseError;
use silo_kit::readiness::MongoCheck;
use silo_kit::retry::RetryPolicy;
use silo_kit::service::{BindError, RunningService};
use silo_kit::startup::{Launch, ServiceIdentity};
use std::ops::Deref;
use std::sync::Arc;

/// payment-service's name (also its durable consumers') and the stream it produces.
pub const SERVICE: ServiceIdentity = ServiceIdentity {
    name: CONSUMER_NAME,
    produces: StreamKind::Payments,
};

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
    /// MongoDB is reachable but cannot run the transactions the store needs.
    #[error("MongoDB cannot run transactions: {0}")]
    MongoWithoutTransactions(String),
    /// The store could not be prepared (migrations, indexes).
    #[error("payment store: {0}")]
    Store(#[from] StoreError),
    /// NATS unreachable or the stream could not be created.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A running payment-service: its [`RunningService`] (address, shutdown, stop) and its store.
pub struct Application {
    service: RunningService,
    store: Arc<dyn PaymentStore>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("service", &self.service)
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

    /// Starts the service charging through `gateway`: the store chosen by the `DATABASE_URL`
    /// scheme, its relay, the consumers, the recovery of abandoned charges and the HTTP server.
    pub async fn build_with_gateway(
        config: PaymentConfig,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Result<Self, StartupError> {
        let url = config.base.database_url.expose();
        if !is_postgres(url) && !is_mongo(url) {
            return Err(StartupError::UnsupportedDatabase);
        }
        let timeout = config.startup_timeout;
        let mut launch =
            Launch::connect(&SERVICE, &config.base, &config.namespace, timeout).await?;
        let store: Arc<dyn PaymentStore> = if is_postgres(url) {
            let pool = launch.postgres(PgPaymentStore::migrations()).await?;
            Arc::new(PgPaymentStore::new(pool))
        } else {
            let store = connect_mongo(url, launch.retry()).await?;
            launch.spawn_relay(MongoOutbox::new(store.database()));
            launch.check(MongoCheck(store.database().clone()));
            Arc::new(store)
        };
        let charging = Charging::new(store.clone(), gateway);
        let bookings = BookingEvents::new(charging.clone());
        launch.spawn_consumer(
            StreamKind::Bookings,
            bookings,
            StoreDeadLetters(store.clone()),
        );
        let users = UserEvents::new(charging.clone());
        launch.spawn_consumer(StreamKind::Users, users, StoreDeadLetters(store.clone()));
        let recovering = charging.clone();
        let policy = RecoveryPolicy::default();
        launch.spawn(move |shutdown| recovery::run(recovering, policy, shutdown));
        let verifier = TokenVerifier::remote(&config.user_service_url);
        let routes = api::routes().with_state(ApiState { charging, verifier });
        let service = launch.serve(routes).await?;
        Ok(Self { service, store })
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> &Arc<dyn PaymentStore> {
        &self.store
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

async fn connect_mongo(url: &str, retry: RetryPolicy) -> Result<MongoPaymentStore, StartupError> {
    let options = mongodb::options::ClientOptions::parse(url)
        .await
        .map_err(|_| StartupError::UnsupportedDatabase)?;
    let database = options
        .default_database
        .clone()
        .ok_or(StartupError::MongoDatabaseMissing)?;
    let store = retry
        .run("mongodb", || MongoPaymentStore::connect(url, &database))
        .await
        .map_err(|(error, attempts)| StartupError::MongoUnreachable {
            attempts,
            reason: error.to_string(),
        })?;
    // Every write of the store is a transaction: refuse a server that cannot run them, rather
    // than dead-lettering every event later while /readyz stays green.
    let hello = store
        .database()
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .await
        .map_err(|error| StartupError::MongoUnreachable {
            attempts: 1,
            reason: error.to_string(),
        })?;
    silo_kit::readiness::mongo_can_commit(&hello)
        .map_err(StartupError::MongoWithoutTransactions)?;
    Ok(store)
}

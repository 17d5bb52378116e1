//! Building and running booking-service: database, broker, outbox relay, consumers and the
//! HTTP server.

use crate::api::{self, ApiState};
use crate::config::BookingConfig;
use crate::consumers::{CONSUMER_NAME, PaymentEvents, UserEvents};
use crate::repository::BookingRepository;
use crate::users::UserServiceClient;
use silo_kit::auth::TokenVerifier;
use silo_kit::broker::BrokerError;
use silo_kit::events::StreamKind;
use silo_kit::inbox::postgres::{PgDeadLetters, PgInbox};
use silo_kit::postgres::DatabaseError;
use silo_kit::service::{BindError, RunningService};
use silo_kit::startup::{Launch, ServiceIdentity};
use sqlx::PgPool;
use std::ops::Deref;

/// booking-service's name (also its durable consumers') and the stream it produces.
pub const SERVICE: ServiceIdentity = ServiceIdentity {
    name: CONSUMER_NAME,
    produces: StreamKind::Bookings,
};

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
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A running booking-service: its [`RunningService`] (address, shutdown, stop) and its pool.
#[derive(Debug)]
pub struct Application {
    service: RunningService,
    pool: PgPool,
}

impl Application {
    /// Connects, migrates, starts the relay, the consumers and the HTTP server.
    pub async fn build(config: BookingConfig) -> Result<Self, StartupError> {
        let timeout = config.startup_timeout;
        let mut launch =
            Launch::connect(&SERVICE, &config.base, &config.namespace, timeout).await?;
        let pool = launch.postgres(sqlx::migrate!("./migrations")).await?;
        let payments = PgInbox::new(pool.clone(), CONSUMER_NAME, PaymentEvents);
        launch.spawn_consumer(
            StreamKind::Payments,
            payments,
            PgDeadLetters::new(pool.clone()),
        );
        let users = PgInbox::new(pool.clone(), CONSUMER_NAME, UserEvents);
        launch.spawn_consumer(StreamKind::Users, users, PgDeadLetters::new(pool.clone()));
        let user_service = UserServiceClient::new(&config.user_service_url)
            .map_err(|e| StartupError::UserService(e.to_string()))?;
        let state = ApiState {
            repository: BookingRepository::new(pool.clone()),
            users: user_service,
            verifier: TokenVerifier::remote(&config.user_service_url),
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

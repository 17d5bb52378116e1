//! PostgreSQL start-up: connect with bounded retry, run migrations.

use crate::config::Secret;
use crate::config::redact_credentials;
use crate::retry::RetryPolicy;
use sqlx::Connection;
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The kit's own migrations (outbox, inbox, dead letters); versions start at
/// 1000000001 and ignore the service's applied versions.
pub fn kit_migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// Connecting to the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// `DATABASE_URL` is not a valid PostgreSQL URL (the URL itself is not shown: it holds a password).
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// The server stayed unreachable for the whole retry period.
    #[error("database {host}:{port}/{database} unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// Database name.
        database: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] MigrateError),
}

/// A connection idle for longer than this is checked with a round trip before
/// it is handed out; one used more recently is handed out as is.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

/// The options of every pool the kit builds: `max_connections`, a 5 s acquire
/// timeout, and a liveness round trip only for connections idle longer than
/// [`IDLE_CHECK_AFTER`].
///
/// sqlx's default pings every connection on every acquire: one more round trip
/// (and two more context switches on each side) for every statement run on the
/// pool. A connection that broke while briefly idle fails its statement
/// instead; the caller's error path handles that as any other database error
/// (consumers NAK and retry, requests answer 500 once).
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_CHECK_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Connects a pool of `max_connections` to `url`, retrying within `retry`.
pub async fn connect(
    url: &Secret,
    max_connections: u32,
    retry: RetryPolicy,
) -> Result<PgPool, DatabaseError> {
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|e| DatabaseError::InvalidUrl(redact_credentials(&e.to_string())))?;
    let host = options.get_host().to_string();
    let port = options.get_port();
    let database = options.get_database().unwrap_or("").to_string();
    let pool_options = pool_options(max_connections);
    retry
        .run("postgres", || {
            pool_options.clone().connect_with(options.clone())
        })
        .await
        .map_err(|(error, attempts)| DatabaseError::Unreachable {
            host,
            port,
            database,
            attempts,
            reason: redact_credentials(&error.to_string()),
        })
}

/// Runs the service's migrations, then the kit's (outbox, inbox, dead letters).
/// Each migrator ignores the other's applied versions.
pub async fn migrate(pool: &PgPool, service: Migrator) -> Result<(), DatabaseError> {
    let mut service = service;
    service.set_ignore_missing(true);
    service.run(pool).await?;
    kit_migrator().run(pool).await?;
    Ok(())
}

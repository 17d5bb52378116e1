//! Readiness checks behind `/readyz`: is each dependency reachable right now?

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency check.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// The dependency's name in the `/readyz` body (`database`, `broker`).
    fn name(&self) -> &'static str;
    /// `Ok` when reachable; the error text is logged, not returned to callers.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// PostgreSQL answers `SELECT 1`.
#[derive(Debug, Clone)]
pub struct PostgresCheck(pub sqlx::PgPool);

impl ReadinessCheck for PostgresCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.0)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// The NATS client is connected.
#[derive(Debug, Clone)]
pub struct NatsCheck(pub async_nats::Client);

impl ReadinessCheck for NatsCheck {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.0.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(format!("NATS connection is {other}")),
            }
        })
    }
}

/// MongoDB answers `ping`.
#[derive(Debug, Clone)]
pub struct MongoCheck(pub mongodb::Database);

impl ReadinessCheck for MongoCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .run_command(mongodb::bson::doc! { "ping": 1 })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// The set of checks a service registers.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|check| check.name()))
            .finish()
    }
}

impl Readiness {
    /// No checks (always ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check.
    pub fn with(mut self, check: impl ReadinessCheck) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Runs every check concurrently; returns `(name, ok)` pairs.
    pub async fn run(&self) -> Vec<(&'static str, bool)> {
        let runs = self.checks.iter().map(|check| async move {
            let ok = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => true,
                Ok(Err(error)) => {
                    tracing::warn!(check = check.name(), %error, "readiness check failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(check = check.name(), "readiness check timed out");
                    false
                }
            };
            (check.name(), ok)
        });
        futures::future::join_all(runs).await
    }
}

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

/// MongoDB can commit a transaction now: its `hello` answer comes from a writable primary of
/// a replica set (or from a mongos).
#[derive(Debug, Clone)]
pub struct MongoCheck(pub mongodb::Database);

impl ReadinessCheck for MongoCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let hello = self
                .0
                .run_command(mongodb::bson::doc! { "hello": 1 })
                .await
                .map_err(|e| e.to_string())?;
            mongo_can_commit(&hello)
        })
    }
}

/// Whether the server that gave this `hello` answer runs multi-document transactions and
/// takes writes now: a standalone server has no transactions at all (they need a replica set
/// or a sharded cluster), a secondary takes no writes.
pub fn mongo_can_commit(hello: &mongodb::bson::Document) -> Result<(), String> {
    let is_mongos = hello.get_str("msg").ok() == Some("isdbgrid");
    if is_mongos {
        return Ok(());
    }
    if hello.get_str("setName").is_err() {
        return Err("the MongoDB server is standalone: transactions need a replica set (start mongod with --replSet and run rs.initiate()) or a sharded cluster".into());
    }
    if hello.get_bool("isWritablePrimary").ok() != Some(true) {
        return Err("no writable primary in the MongoDB replica set".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mongo_can_commit;
    use mongodb::bson::doc;

    #[test]
    fn only_a_writable_replica_set_primary_or_a_mongos_can_commit() {
        let primary = doc! { "isWritablePrimary": true, "setName": "rs0" };
        assert_eq!(mongo_can_commit(&primary), Ok(()));
        let mongos = doc! { "isWritablePrimary": true, "msg": "isdbgrid" };
        assert_eq!(mongo_can_commit(&mongos), Ok(()));
        let standalone = doc! { "isWritablePrimary": true };
        assert!(
            mongo_can_commit(&standalone)
                .unwrap_err()
                .contains("standalone")
        );
        let secondary = doc! { "isWritablePrimary": false, "secondary": true, "setName": "rs0" };
        assert!(
            mongo_can_commit(&secondary)
                .unwrap_err()
                .contains("primary")
        );
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

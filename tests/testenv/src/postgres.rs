//! Throwaway PostgreSQL databases on the local server.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;

/// The superuser URL of the local PostgreSQL server.
pub fn postgres_admin_url() -> String {
    crate::require("SILO_POSTGRES_ADMIN_URL")
}

/// A freshly created, uniquely named database, dropped when this value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `test_<random>` owned by the superuser.
    pub async fn create() -> Self {
        let admin_url = postgres_admin_url();
        let name = format!("test_{}", crate::unique_suffix());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the local PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = PgConnectOptions::from_str(&admin_url)
            .expect("SILO_POSTGRES_ADMIN_URL is a valid URL")
            .database(&name)
            .to_url_lossy()
            .to_string();
        Self { name, url }
    }

    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser URL that connects to this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small pool on this database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(5)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let drop = async {
                    let mut admin = PgConnection::connect(&postgres_admin_url()).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin)
                        .await
                        .ok()
                };
                tokio::time::timeout(std::time::Duration::from_secs(30), drop)
                    .await
                    .ok()?
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

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
    /// Drops the database, waiting at most [`DROP_WAIT`] for the server to finish.
    ///
    /// PostgreSQL 15's `DROP DATABASE` waits until every backend of the server has accepted a
    /// barrier, and a backend still authenticating a client does not accept it until the client
    /// answers. This runs on the test's own runtime thread, which it blocks: a connection that
    /// this test process had half-opened (a pool topping itself up as the test ends) cannot
    /// answer, and the drop would wait on it, stalling every other drop on the server, until
    /// some timeout. So once the statement is sent this waits only briefly: the server goes on
    /// with the drop after the connection closes, as soon as this process exits and its
    /// half-open connections with it.
    fn drop(&mut self) {
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let mut admin = tokio::time::timeout(
                    CONNECT_WAIT,
                    PgConnection::connect(&postgres_admin_url()),
                )
                .await
                .map_err(|_| "timed out connecting".to_string())?
                .map_err(|e| e.to_string())?;
                let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                match tokio::time::timeout(DROP_WAIT, sqlx::query(&statement).execute(&mut admin))
                    .await
                {
                    Ok(done) => done.map(|_| ()).map_err(|e| e.to_string()),
                    // Sent; the server finishes it without this connection.
                    Err(_) => Ok(()),
                }
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                eprintln!(
                    "warning: test database {} was not dropped: {reason}",
                    self.name
                )
            }
            Err(_) => eprintln!("warning: test database {} was not dropped", self.name),
        }
    }
}

/// How long dropping a test database waits for the admin connection.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long dropping a test database waits for the server once the statement is sent.
const DROP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

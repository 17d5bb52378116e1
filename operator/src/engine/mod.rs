//! Provisioning on database engines: one [`Engine`] trait, one implementation per engine.

pub mod connection_cache;
pub mod mongodb;
pub mod postgres;
pub mod sql_quote;

use std::future::Future;

use thiserror::Error;

use crate::crd::TlsMode;
use crate::password::Password;

/// How the operator reaches a server as its administrator.
#[derive(Clone, Debug)]
pub struct AdminConnection {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Administrator login name.
    pub username: String,
    /// Administrator password.
    pub password: Password,
    /// TLS mode.
    pub tls: TlsMode,
}

impl AdminConnection {
    /// A digest of everything a connection is made with (host, port, login, password, TLS
    /// mode): equal exactly when a cached connection may be reused. Reveals no password.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in [
            self.host.as_str(),
            &self.port.to_string(),
            &self.username,
            self.password.expose(),
            &format!("{:?}", self.tls),
        ] {
            // Length-prefixed, so that no two different settings hash the same input.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The names a `Database` uses on its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerNames {
    /// Database name.
    pub database: String,
    /// Role (PostgreSQL) or user (MongoDB) name.
    pub role: String,
    /// `silo:<uid of the Database>`, the comment that marks what Silo created for it.
    pub marker: String,
}

/// What one provisioning pass did and measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionReport {
    /// The role or user did not exist and was created.
    pub role_created: bool,
    /// The database did not exist and was created.
    pub database_created: bool,
    /// A new password was set on the server.
    pub password_set: bool,
    /// Access found on the server beyond the owner's, and revoked (human-readable, no secrets).
    pub repaired: Vec<String>,
    /// Logins that can still reach the database after repair (measured from the catalog).
    pub remaining_access: Vec<String>,
}

impl ProvisionReport {
    /// Whether the catalog shows that only the owner (and the admin) can reach the database.
    pub fn access_verified(&self) -> bool {
        self.remaining_access.is_empty()
    }
}

/// A failure talking to an engine. Messages never contain a password.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The server could not be reached or refused the admin login.
    #[error("cannot connect to the server as admin: {0}")]
    AdminConnect(String),
    /// A statement or command failed.
    #[error("{action} failed: {message}")]
    Command {
        /// What the operator was doing.
        action: &'static str,
        /// The server's message.
        message: String,
    },
    /// A name cannot be expressed safely.
    #[error("invalid identifier: {0}")]
    InvalidIdentifier(#[from] sql_quote::NulCharacter),
    /// The role or database exists but was not created by Silo for this `Database`.
    #[error("{0}")]
    NameTaken(String),
    /// The role could not log in even after its password was reset.
    #[error("the role cannot log in with its credentials: {0}")]
    LoginFailed(String),
}

/// Operations every engine provides. Each is idempotent: repeating it converges on the same state.
pub trait Engine: Send + Sync {
    /// The server's version string.
    fn server_version(&self) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// Makes the role and database exist, the role own the database and nobody else reach it,
    /// sets `password` when `set_password` (or when the role cannot log in with it), and measures
    /// the resulting access from the server's catalog.
    fn provision(
        &self,
        names: &ServerNames,
        password: &Password,
        set_password: bool,
    ) -> impl Future<Output = Result<ProvisionReport, EngineError>> + Send;

    /// Ends the role's sessions, drops the database, then the role; missing ones are fine.
    fn deprovision(
        &self,
        names: &ServerNames,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// The engine of one server, chosen at run time.
pub enum AnyEngine {
    /// PostgreSQL.
    Postgres(postgres::PostgresEngine),
    /// MongoDB.
    Mongodb(mongodb::MongoEngine),
}

impl Engine for AnyEngine {
    async fn server_version(&self) -> Result<String, EngineError> {
        match self {
            AnyEngine::Postgres(e) => e.server_version().await,
            AnyEngine::Mongodb(e) => e.server_version().await,
        }
    }

    async fn provision(
        &self,
        names: &ServerNames,
        password: &Password,
        set_password: bool,
    ) -> Result<ProvisionReport, EngineError> {
        match self {
            AnyEngine::Postgres(e) => e.provision(names, password, set_password).await,
            AnyEngine::Mongodb(e) => e.provision(names, password, set_password).await,
        }
    }

    async fn deprovision(&self, names: &ServerNames) -> Result<(), EngineError> {
        match self {
            AnyEngine::Postgres(e) => e.deprovision(names).await,
            AnyEngine::Mongodb(e) => e.deprovision(names).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_tells_every_connection_setting_apart_and_hides_the_password() {
        let admin = AdminConnection {
            host: "db.example".into(),
            port: 5432,
            username: "silo_admin".into(),
            password: Password::from_secret_value("hunter2hunter2".into()),
            tls: TlsMode::VerifyFull,
        };
        let changes: [fn(&mut AdminConnection); 5] = [
            |a| a.host = "db2.example".into(),
            |a| a.port = 6432,
            |a| a.username = "other".into(),
            |a| a.password = Password::from_secret_value("changed".into()),
            |a| a.tls = TlsMode::Disable,
        ];
        let original = admin.fingerprint();
        assert_eq!(original, admin.clone().fingerprint());
        assert!(!original.contains("hunter2"));
        for change in changes {
            let mut changed = admin.clone();
            change(&mut changed);
            assert_ne!(changed.fingerprint(), original, "{changed:?}");
        }
    }
}

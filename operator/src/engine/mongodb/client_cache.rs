//! One MongoDB admin client per server, shared by every reconcile.

use mongodb::Client;

use super::client_options;
use crate::engine::connection_cache::ConnectionCache;
use crate::engine::mongodb::access_plan::ADMIN_DATABASE;
use crate::engine::{AdminConnection, EngineError};

/// Admin clients shared by every reconcile, one per server. A `Client` owns a connection pool
/// and server monitors, so one per reconcile would reconnect and re-authenticate each time.
#[derive(Default)]
pub struct MongoClientCache {
    clients: ConnectionCache<Client>,
}

impl MongoClientCache {
    /// The client of `server` (the key of the object naming it) for `admin`, created lazily
    /// (it connects on first use). Any change of what it connects with (host, port, login,
    /// password, TLS mode) replaces it, so there is never more than one per server.
    pub fn client(&self, server: &str, admin: &AdminConnection) -> Result<Client, EngineError> {
        let lookup = self.clients.get(server, &admin.fingerprint(), || {
            let options = client_options(admin, &admin.username, &admin.password, ADMIN_DATABASE);
            Client::with_options(options).map_err(|e| EngineError::AdminConnect(e.to_string()))
        })?;
        if let Some(old) = lookup.replaced {
            tokio::spawn(async move { old.shutdown().await });
        }
        Ok(lookup.current)
    }

    /// Shuts down and drops the client of `server`, which is gone.
    pub fn forget(&self, server: &str) {
        if let Some(old) = self.clients.forget(server) {
            tokio::spawn(async move { old.shutdown().await });
        }
    }

    /// Shuts down and drops the clients of the servers `keep` says no to (they are gone).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        for old in self.clients.retain(keep) {
            tokio::spawn(async move { old.shutdown().await });
        }
    }

    /// How many servers have a client.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no server has a client.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TlsMode;
    use crate::password::Password;

    #[tokio::test]
    async fn one_client_per_server_replaced_when_what_it_connects_with_changes() {
        let cache = MongoClientCache::default();
        let admin = AdminConnection {
            host: "mongo.example".into(),
            port: 27017,
            username: "root".into(),
            password: Password::from_secret_value("first".into()),
            tls: TlsMode::VerifyFull,
        };
        let server = "DatabaseServer//mongo";
        cache.client(server, &admin).unwrap();
        cache.client(server, &admin).unwrap();
        let changed = AdminConnection {
            password: Password::from_secret_value("second".into()),
            tls: TlsMode::Disable,
            host: "mongo2.example".into(),
            ..admin.clone()
        };
        cache.client(server, &changed).unwrap();
        assert_eq!(cache.clients.len(), 1, "one client per server");
        cache.client("DatabaseServer//other", &admin).unwrap();
        assert_eq!(cache.clients.len(), 2);
        cache.forget(server);
        assert_eq!(cache.clients.len(), 1);
    }
}

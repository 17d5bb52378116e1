//! Watched copies of the objects reconciles read, so that a pass with nothing to change makes
//! no API requests; and what this process itself last wrote, to know when a copy is current.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use sha2::{Digest, Sha256};

use super::cluster_view::ClusterView;
use crate::crd::DatabaseServer;
use crate::password::Password;

/// How long an admin login read from its Secret is reused before it is read again.
pub const ADMIN_LOGIN_TTL: Duration = Duration::from_secs(60);

/// The caches of one operator process; empty (every read goes to the API server) when the
/// controllers are not running, e.g. in unit tests.
#[derive(Default)]
pub struct Caches {
    servers: Option<Store<DatabaseServer>>,
    secrets: Option<Store<Secret>>,
    /// Pods, Namespaces and NetworkPolicies, for measuring who reaches a database.
    cluster: Option<ClusterView>,
    /// Object key of a `Database` → resourceVersion of its credentials Secret as last written or
    /// read from the API server by this process.
    written_secrets: Mutex<HashMap<String, String>>,
    /// Object key of a `Database` → digest of the credentials Secret this process is writing or
    /// last wrote, taken before the write: the watch may deliver the write before its response
    /// tells the new resourceVersion.
    written_contents: Mutex<HashMap<String, [u8; 32]>>,
    /// `namespace/name` of an admin Secret → when it was read, and the login in it.
    admin_logins: Mutex<HashMap<String, (Instant, String, Password)>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Caches {
    /// Caches reading from the given reflector stores.
    pub fn new(servers: Store<DatabaseServer>, secrets: Store<Secret>) -> Self {
        Self {
            servers: Some(servers),
            secrets: Some(secrets),
            ..Self::default()
        }
    }

    /// The same caches measuring reachability over `view`.
    pub fn with_cluster(mut self, view: ClusterView) -> Self {
        self.cluster = Some(view);
        self
    }

    /// The watched Pods, Namespaces and NetworkPolicies, when this process watches them.
    pub fn cluster(&self) -> Option<&ClusterView> {
        self.cluster.as_ref()
    }

    /// The watched copy of DatabaseServer `name`, if the watch holds it.
    pub fn server(&self, name: &str) -> Option<Arc<DatabaseServer>> {
        self.servers.as_ref()?.get(&ObjectRef::new(name))
    }

    /// The watched copy of Secret `namespace/name`, but only if it is the version this process
    /// last wrote or read for `key`: anything else (a change by somebody else, a write the watch
    /// has not delivered yet, a restart) must be read from the API server.
    pub fn current_secret(&self, key: &str, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let written = locked(&self.written_secrets).get(key).cloned()?;
        let secret = self
            .secrets
            .as_ref()?
            .get(&ObjectRef::new(name).within(namespace))?;
        (secret.resource_version().as_deref() == Some(written.as_str())).then_some(secret)
    }

    /// Whether a watch event about `secret` reports nothing new to the `Database` that controls
    /// it: the Secret is exactly the version this process last wrote or read, or it still exists
    /// (the watch cache holds it) with the content this process wrote last.
    pub fn is_known_version(&self, secret: &Secret) -> bool {
        let Some(owner) = secret
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true) && r.kind == "Database")
        else {
            return false;
        };
        let namespace = secret.namespace().unwrap_or_default();
        let key = format!("Database/{namespace}/{}", owner.name);
        let version = secret.resource_version();
        if version.is_some() && locked(&self.written_secrets).get(&key) == version.as_ref() {
            return true;
        }
        let still_there = self.secrets.as_ref().is_some_and(|store| {
            store
                .get(&ObjectRef::new(&secret.name_any()).within(&namespace))
                .is_some()
        });
        still_there && locked(&self.written_contents).get(&key) == Some(&content_digest(secret))
    }

    /// Records, before writing it, the content of the credentials Secret of `key`.
    pub fn writing_secret(&self, key: &str, secret: &Secret) {
        locked(&self.written_contents).insert(key.to_string(), content_digest(secret));
    }

    /// Records the resourceVersion of the credentials Secret just written or read for `key`.
    pub fn saw_secret(&self, key: &str, resource_version: Option<String>) {
        let mut written = locked(&self.written_secrets);
        match resource_version {
            Some(version) => written.insert(key.to_string(), version),
            None => written.remove(key),
        };
    }

    /// A login read from admin Secret `namespace/name` less than [`ADMIN_LOGIN_TTL`] ago.
    pub fn admin_login(&self, namespace: &str, name: &str) -> Option<(String, Password)> {
        let logins = locked(&self.admin_logins);
        let (read_at, username, password) = logins.get(&format!("{namespace}/{name}"))?;
        (read_at.elapsed() < ADMIN_LOGIN_TTL).then(|| (username.clone(), password.clone()))
    }

    /// Keeps the login just read from admin Secret `namespace/name`.
    pub fn remember_admin_login(&self, namespace: &str, name: &str, login: &(String, Password)) {
        let mut logins = locked(&self.admin_logins);
        // Expired logins are never used again (the Secret of a deleted server among them).
        logins.retain(|_, (read_at, _, _)| read_at.elapsed() < ADMIN_LOGIN_TTL);
        logins.insert(
            format!("{namespace}/{name}"),
            (Instant::now(), login.0.clone(), login.1.clone()),
        );
    }

    /// Drops every kept admin login (one was refused: read them again).
    pub fn forget_admin_logins(&self) {
        locked(&self.admin_logins).clear();
    }

    /// Forgets what was kept for `key`, whose object is gone.
    pub fn forget(&self, key: &str) {
        self.retain(|kept| kept != key);
    }

    /// Keeps what was kept only for the objects `keep` says yes to.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        locked(&self.written_secrets).retain(|key, _| keep(key));
        locked(&self.written_contents).retain(|key, _| keep(key));
    }
}

/// A digest of what the operator writes into a credentials Secret: its type, labels and data
/// (kept only as a digest: the data holds the password).
fn content_digest(secret: &Secret) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(secret.type_.as_deref().unwrap_or_default().as_bytes());
    for (name, value) in secret.labels() {
        field(name.as_bytes());
        field(value.as_bytes());
    }
    field(b"data");
    for (name, value) in secret.data.iter().flatten() {
        field(name.as_bytes());
        field(&value.0);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn secret(version: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some("users-db".into());
        secret.metadata.namespace = Some("shop".into());
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    /// `secret(version)` controlled by Database `shop/users`.
    fn owned_secret(version: &str) -> Secret {
        let mut owned = secret(version);
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "silo.dev/v1alpha1".into(),
                kind: "Database".into(),
                name: "users".into(),
                uid: "u-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        owned
    }

    #[test]
    fn a_watched_secret_is_used_only_in_the_version_last_written() {
        let (secrets, mut writer) = reflector::store();
        let (servers, _) = reflector::store();
        let caches = Caches::new(servers, secrets);
        writer.apply_watcher_event(&Event::Apply(secret("7")));

        // Nothing written by this process yet: read from the API server.
        assert!(caches.current_secret("db", "shop", "users-db").is_none());
        caches.saw_secret("db", Some("7".into()));
        assert!(caches.current_secret("db", "shop", "users-db").is_some());
        // Written again, the watch has not caught up: the copy is stale.
        caches.saw_secret("db", Some("8".into()));
        assert!(caches.current_secret("db", "shop", "users-db").is_none());
        writer.apply_watcher_event(&Event::Apply(secret("8")));
        assert!(caches.current_secret("db", "shop", "users-db").is_some());
        caches.forget("db");
        assert!(caches.current_secret("db", "shop", "users-db").is_none());
    }

    #[test]
    fn only_a_secret_in_a_version_this_process_wrote_is_known() {
        let caches = Caches::default();
        let mut owned = owned_secret("7");
        assert!(!caches.is_known_version(&owned));
        caches.saw_secret("Database/shop/users", Some("7".into()));
        assert!(caches.is_known_version(&owned));
        // Changed by somebody else, or deleted (a deletion carries a new version).
        owned.metadata.resource_version = Some("9".into());
        assert!(!caches.is_known_version(&owned));
        // Not controlled by a Database: never filtered.
        assert!(!caches.is_known_version(&secret("7")));
    }

    #[test]
    fn a_secret_with_the_content_being_written_is_known_while_it_exists() {
        let (secrets, mut writer) = reflector::store();
        let (servers, _) = reflector::store();
        let caches = Caches::new(servers, secrets);
        let mut ours = owned_secret("7");
        ours.data = Some(
            [(
                "password".to_string(),
                k8s_openapi::ByteString(b"s3cret".to_vec()),
            )]
            .into(),
        );
        // The write is under way; its watch event arrives before its response.
        caches.writing_secret("Database/shop/users", &ours);
        writer.apply_watcher_event(&Event::Apply(ours.clone()));
        assert!(caches.is_known_version(&ours));
        // Somebody else changed the password: news.
        let mut changed = ours.clone();
        changed.metadata.resource_version = Some("8".into());
        changed.data = Some(
            [(
                "password".to_string(),
                k8s_openapi::ByteString(b"other".to_vec()),
            )]
            .into(),
        );
        assert!(!caches.is_known_version(&changed));
        // Deleted: the watch cache no longer holds it, so the same content is news too.
        writer.apply_watcher_event(&Event::Delete(ours.clone()));
        assert!(!caches.is_known_version(&ours));
    }

    #[test]
    fn admin_logins_are_kept_until_forgotten() {
        let caches = Caches::default();
        assert!(caches.admin_login("ns", "admin").is_none());
        let login = ("silo".to_string(), Password::from_secret_value("pw".into()));
        caches.remember_admin_login("ns", "admin", &login);
        assert_eq!(caches.admin_login("ns", "admin").unwrap().0, "silo");
        caches.forget_admin_logins();
        assert!(caches.admin_login("ns", "admin").is_none());
    }
}

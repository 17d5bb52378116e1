//! The admin Secret of a server the operator runs, and the credentials Secret of a `Database`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{MANAGED_BY, Workload};
use crate::crd::Engine;
use crate::names::label_value;
use crate::uri::{LoginParts, connection_uri, jdbc_uri};

/// Admin Secret key: login name.
pub const ADMIN_USERNAME_KEY: &str = "username";
/// Admin Secret key: password.
pub const ADMIN_PASSWORD_KEY: &str = "password";
/// Admin Secret key: MongoDB replica-set key file.
pub const ADMIN_KEYFILE_KEY: &str = "keyfile";

/// The admin login Secret of `workload` (created once; the password is never regenerated).
pub fn admin_secret(
    workload: &Workload,
    password: &str,
    keyfile: &str,
) -> Result<Secret, serde_json::Error> {
    let username = match workload.engine {
        Engine::Postgres => "postgres",
        Engine::Mongodb => "root",
    };
    let mut data = BTreeMap::from([
        (ADMIN_USERNAME_KEY, username.to_string()),
        (ADMIN_PASSWORD_KEY, password.to_string()),
    ]);
    if workload.engine == Engine::Mongodb {
        data.insert(ADMIN_KEYFILE_KEY, keyfile.to_string());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": workload.admin_secret_name(),
            "namespace": workload.namespace,
            "labels": workload.labels(),
            "ownerReferences": [workload.owner],
        },
        "type": "Opaque",
        "stringData": data,
    }))
}

/// What the credentials Secret of a `Database` is made of.
// Debug is safe to derive: the only secret, `login.password`, is redacted by `LoginParts`.
#[derive(Debug)]
pub struct CredentialsSecretInput<'a> {
    /// Secret name.
    pub name: &'a str,
    /// Namespace (the Database's).
    pub namespace: &'a str,
    /// Name of the `Database`.
    pub database_resource: &'a str,
    /// The owning service.
    pub owner: &'a str,
    /// The `Database` as controller owner.
    pub owner_reference: &'a OwnerReference,
    /// The login.
    pub login: LoginParts<'a>,
}

/// Labels of the credentials Secret.
pub fn credentials_secret_labels(database_resource: &str, owner: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (
            "silo.dev/database".to_string(),
            label_value(database_resource),
        ),
        ("silo.dev/owner".to_string(), owner.to_string()),
    ])
}

/// The credentials Secret: `username`, `password`, `host`, `port`, `database`, `uri` and, for
/// PostgreSQL, `jdbc-uri`.
pub fn credentials_secret(input: &CredentialsSecretInput<'_>) -> Result<Secret, serde_json::Error> {
    let login = &input.login;
    let mut data = BTreeMap::from([
        ("username", login.username.to_string()),
        ("password", login.password.to_string()),
        ("host", login.host.to_string()),
        ("port", login.port.to_string()),
        ("database", login.database.to_string()),
        ("uri", connection_uri(login)),
    ]);
    if login.engine == Engine::Postgres {
        data.insert("jdbc-uri", jdbc_uri(login));
    }
    // `data`, not `stringData`: the API server rewrites `stringData` into `data`, so applying it
    // changes the object every time, and the owned-Secret watch would reconcile in a loop.
    let data: BTreeMap<&str, String> = data
        .into_iter()
        .map(|(key, value)| (key, BASE64.encode(value)))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": input.name,
            "namespace": input.namespace,
            "labels": credentials_secret_labels(input.database_resource, input.owner),
            "ownerReferences": [input.owner_reference],
        },
        "type": "Opaque",
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{assert_matches, load};
    use crate::crd::{Database, DatabaseServer, TlsMode};
    use kube::Resource;

    #[test]
    fn credentials_secret_matches_fixture() {
        let db: Database = load("shared-postgres.database.yaml");
        let owner_reference = db.controller_owner_ref(&()).unwrap();
        let secret = credentials_secret(&CredentialsSecretInput {
            name: "users-db",
            namespace: "shop",
            database_resource: "users",
            owner: "user-service",
            owner_reference: &owner_reference,
            login: LoginParts {
                engine: Engine::Postgres,
                username: "shop_users",
                password: "pa:ss/word",
                host: "pg.example.com",
                port: 5432,
                database: "shop_users",
                tls: TlsMode::Require,
            },
        })
        .unwrap();
        assert_matches(&secret, "shared-postgres.credentials-secret.yaml");
    }

    #[test]
    fn debug_output_of_the_input_leaves_the_password_out() {
        let owner_reference = OwnerReference::default();
        let input = CredentialsSecretInput {
            name: "users-db",
            namespace: "shop",
            database_resource: "users",
            owner: "user-service",
            owner_reference: &owner_reference,
            login: LoginParts {
                engine: Engine::Postgres,
                username: "shop_users",
                password: "s3cret-value",
                host: "pg.example.com",
                port: 5432,
                database: "shop_users",
                tls: TlsMode::Require,
            },
        };
        let shown = format!("{input:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("users-db"), "{shown}");
    }

    #[test]
    fn mongodb_admin_secret_carries_a_key_file_and_postgres_does_not() {
        let server: DatabaseServer = load("managed-postgres.server.yaml");
        let spec = server.spec.managed.clone().unwrap();
        let mut workload = Workload::managed(&server, &spec, &Default::default()).unwrap();
        let pg = admin_secret(&workload, "pw", "kf").unwrap();
        assert_matches(&pg, "managed-postgres.admin-secret.yaml");
        workload.engine = Engine::Mongodb;
        let mongo = admin_secret(&workload, "pw", "kf").unwrap();
        let data = mongo.string_data.unwrap();
        assert_eq!(data.get(ADMIN_KEYFILE_KEY).map(String::as_str), Some("kf"));
        assert_eq!(
            data.get(ADMIN_USERNAME_KEY).map(String::as_str),
            Some("root")
        );
    }
}

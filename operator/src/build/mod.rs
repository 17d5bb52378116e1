//! Pure builders: a validated spec in, the Kubernetes objects the operator wants out.
//! Nothing here talks to the API server, so all of it is unit-tested from YAML fixtures.

mod network_policy;
mod secrets;
mod service;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

pub use network_policy::{AllowedClient, network_policy};
pub use secrets::{
    ADMIN_KEYFILE_KEY, ADMIN_PASSWORD_KEY, ADMIN_USERNAME_KEY, CredentialsSecretInput,
    admin_secret, credentials_secret, credentials_secret_labels,
};
pub use service::service;
pub use statefulset::statefulset;

use crate::crd::{Database, DatabaseServer, Engine, ManagedServerSpec};
use crate::image::ImageRepositories;

/// Namespace a managed `DatabaseServer` runs in when its spec names none.
pub const DEFAULT_SERVER_NAMESPACE: &str = "silo-system";
/// Label every object the operator creates carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "silo");
/// Label on service pods that a server's NetworkPolicy admits.
pub const SERVICE_LABEL: &str = "silo.dev/service";

/// A server workload the operator runs: everything the builders need, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Name of the StatefulSet, headless Service and NetworkPolicy.
    pub name: String,
    /// Namespace of all of them.
    pub namespace: String,
    /// Engine it runs.
    pub engine: Engine,
    /// Version, storage and resources.
    pub spec: ManagedServerSpec,
    /// Container image of the server (resolved from the spec and the operator's defaults).
    pub image: String,
    /// The owning `Database` or `DatabaseServer` (controller reference, for garbage collection).
    pub owner: OwnerReference,
}

impl Workload {
    /// The server dedicated to one `Database`, in its namespace.
    pub fn dedicated(
        db: &Database,
        spec: &ManagedServerSpec,
        images: &ImageRepositories,
    ) -> Option<Self> {
        Some(Self {
            name: format!("{}-dbserver", db.name_any()),
            namespace: db.namespace()?,
            engine: db.spec.engine,
            spec: spec.clone(),
            image: images.resolve(db.spec.engine, spec),
            owner: db.controller_owner_ref(&())?,
        })
    }

    /// The server of a managed `DatabaseServer`.
    pub fn managed(
        server: &DatabaseServer,
        spec: &ManagedServerSpec,
        images: &ImageRepositories,
    ) -> Option<Self> {
        Some(Self {
            name: format!("silo-{}", server.name_any()),
            namespace: spec
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVER_NAMESPACE.to_string()),
            engine: server.spec.engine,
            spec: spec.clone(),
            image: images.resolve(server.spec.engine, spec),
            owner: server.controller_owner_ref(&())?,
        })
    }

    /// Name of the Secret holding the server's admin login.
    pub fn admin_secret_name(&self) -> String {
        format!("{}-admin", self.name)
    }

    /// Host name clients use inside the cluster.
    pub fn host(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }

    /// Port the engine listens on.
    pub fn port(&self) -> u16 {
        self.engine.default_port()
    }

    /// Labels that select the server's pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                format!("silo-{}", self.engine.as_str()),
            ),
            ("app.kubernetes.io/instance".to_string(), self.name.clone()),
        ])
    }

    /// Labels on every object of the workload.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
        labels.insert(
            "app.kubernetes.io/component".to_string(),
            "database-server".to_string(),
        );
        labels
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Reads YAML fixtures from `operator/tests/fixtures/build/`.

    use serde::de::DeserializeOwned;

    /// Parses the fixture file `name`.
    pub fn load<T: DeserializeOwned>(name: &str) -> T {
        let path = format!("{}/tests/fixtures/build/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Asserts that `actual`, as JSON, equals the YAML fixture `expected`.
    /// With `SILO_UPDATE_FIXTURES=1` the fixture is (re)written instead, for review in the diff.
    pub fn assert_matches<T: serde::Serialize>(actual: &T, expected: &str) {
        let actual = serde_json::to_value(actual).unwrap();
        if std::env::var("SILO_UPDATE_FIXTURES").is_ok() {
            let path = format!(
                "{}/tests/fixtures/build/{expected}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::write(&path, serde_yaml::to_string(&actual).unwrap()).unwrap();
            return;
        }
        let expected: serde_json::Value = load(expected);
        assert_eq!(
            actual,
            expected,
            "built object differs from fixture {expected_name}; built:\n{}",
            serde_yaml::to_string(&actual).unwrap(),
            expected_name = expected
        );
    }
}

//! Pure builders: a validated spec in, the Kubernetes objects the operator wants out.
//! Nothing here talks to the API server, so all of it is unit-tested from YAML fixtures.

pub mod microservice;
mod network_policy;
mod secrets;
mod service;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

pub use network_policy::{AllowedClient, network_policy, pods_peer};
pub use secrets::{
    ADMIN_KEYFILE_KEY, ADMIN_PASSWORD_KEY, ADMIN_USERNAME_KEY, CredentialsSecretInput,
    admin_secret, credentials_secret, credentials_secret_labels,
};
pub use service::service;
pub use statefulset::{data_claim_name, statefulset};

use crate::crd::{Database, DatabaseServer, Engine, ManagedServerSpec};
use crate::image::ImageRepositories;

/// Namespace a managed `DatabaseServer` runs in when its spec names none.
pub const DEFAULT_SERVER_NAMESPACE: &str = "silo-system";
/// Label every object the operator creates carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "silo");
/// Label on service pods that a server's NetworkPolicy admits.
pub const SERVICE_LABEL: &str = "silo.dev/service";
/// Label the operator's own pods carry (the chart sets it); a server's NetworkPolicy admits
/// pods with it in the operator's namespace, and no other pod there.
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "silo-operator");

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

    /// Whether fixtures are rewritten rather than compared: only when `SILO_UPDATE_FIXTURES`
    /// (`update`) is set, and never under CI (`ci`), where a rewrite would make every fixture
    /// test pass whatever the builders produce.
    pub fn rewriting(update: Option<&str>, ci: Option<&str>) -> Result<bool, String> {
        match (update, ci) {
            (None, _) => Ok(false),
            (Some(_), Some(ci)) if !ci.is_empty() && ci != "false" && ci != "0" => Err(
                "SILO_UPDATE_FIXTURES is set under CI: fixtures are compared there, never rewritten"
                    .to_string(),
            ),
            (Some(_), _) => Ok(true),
        }
    }

    /// Asserts that `actual`, as JSON, equals the YAML fixture `expected`.
    /// With `SILO_UPDATE_FIXTURES=1` the fixture is (re)written instead, for review in the diff
    /// (refused under `CI`).
    pub fn assert_matches<T: serde::Serialize>(actual: &T, expected: &str) {
        let actual = serde_json::to_value(actual).unwrap();
        let update = std::env::var("SILO_UPDATE_FIXTURES").ok();
        let ci = std::env::var("CI").ok();
        if rewriting(update.as_deref(), ci.as_deref()).unwrap_or_else(|e| panic!("{e}")) {
            let path = format!(
                "{}/tests/fixtures/build/{expected}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::write(&path, serde_yaml::to_string(&actual).unwrap()).unwrap();
            eprintln!("rewrote fixture {path}: review the diff");
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

    #[test]
    fn fixtures_are_never_rewritten_under_ci() {
        assert_eq!(rewriting(None, None), Ok(false));
        assert_eq!(rewriting(None, Some("true")), Ok(false));
        assert_eq!(rewriting(Some("1"), None), Ok(true));
        assert_eq!(rewriting(Some("1"), Some("false")), Ok(true));
        assert!(rewriting(Some("1"), Some("true")).is_err());
        assert!(rewriting(Some("1"), Some("1")).is_err());
    }
}

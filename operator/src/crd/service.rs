//! `Service`: a microservice and the database it owns, deployed, wired and fenced by Silo.

// kube-derive repeats `type_` in every `printcolumn`, which clippy mistakes for a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CredentialsSpec, DeletionPolicy, Engine, ServerBinding};

/// The port a service listens on when its spec names none.
pub const DEFAULT_PORT: i32 = 8080;
/// Path of the liveness probe when the spec names none.
pub const DEFAULT_LIVENESS_PATH: &str = "/healthz";
/// Path of the readiness probe when the spec names none.
pub const DEFAULT_READINESS_PATH: &str = "/readyz";
/// The NATS client port, the broker port when only a Secret knows the broker's URL.
pub const DEFAULT_BROKER_PORT: i32 = 4222;

/// A microservice: its pods, its in-cluster address, the database it owns and the services it
/// calls. Silo runs it as a Deployment with a ClusterIP Service, injects `DATABASE_URL`,
/// `BROKER_URL` and one `<DEPENDENCY>_URL` per dependency, fences its pods with a
/// NetworkPolicy, and measures that nobody but this service can reach its database.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "silo.dev",
    version = "v1alpha1",
    kind = "Service",
    namespaced,
    status = "ServiceStatus",
    shortname = "ssvc",
    category = "silo",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Database",
        type_ = "string",
        json_path = ".status.database.name"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Container image, e.g. `registry.example.com/shop/user-service:1.4.2`. It must run as a
    /// numeric non-root user (the pod runs with `runAsNonRoot` and a read-only root file
    /// system; `/tmp` is writable).
    pub image: String,
    /// TCP port the service listens on (default 8080), also the port of its ClusterIP Service.
    /// It is passed to the container as `PORT`.
    #[serde(default = "default_port")]
    pub port: i32,
    /// Number of pods (default 1).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Extra environment variables. Names must be unique and must not be one the operator sets
    /// (`PORT`, `DATABASE_URL`, `BROKER_URL`, `<DEPENDENCY>_URL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<ServiceEnvVar>,
    /// CPU and memory requests/limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// HTTP paths of the liveness and readiness probes.
    #[serde(default)]
    pub probes: ProbesSpec,
    /// The database this service owns: `ref` to a `Database` of this namespace whose `owner` is
    /// this service, or `template`, from which the operator creates a `Database` named
    /// `<service>-db` owned by this Service. Its login reaches the pods as `DATABASE_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSource>,
    /// The services this one calls over HTTP. Each is injected as
    /// `<NAME>_URL=http://<name>.<namespace>.svc:<port>` (`user-service` → `USER_SERVICE_URL`),
    /// and the NetworkPolicies of both let exactly this traffic through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// The NATS broker, injected as `BROKER_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerSpec>,
    /// Whether pods of namespaces labelled `silo.dev/ingress=true` (an ingress controller, a
    /// gateway) may call this service.
    #[serde(default)]
    pub exposed: bool,
}

fn default_port() -> i32 {
    DEFAULT_PORT
}

fn default_replicas() -> i32 {
    1
}

/// An environment variable of the service's container: a literal `value` or a key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value. Set exactly one of `value` and `secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A key of a Secret in this namespace, read by the kubelet (never copied by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the service's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key in the Secret.
    pub key: String,
}

/// HTTP paths the kubelet probes on the service's port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbesSpec {
    /// Liveness: the pod is restarted when this fails (default `/healthz`).
    #[serde(default = "default_liveness_path")]
    pub liveness_path: String,
    /// Readiness: the pod receives traffic only while this succeeds (default `/readyz`).
    #[serde(default = "default_readiness_path")]
    pub readiness_path: String,
}

impl Default for ProbesSpec {
    fn default() -> Self {
        Self {
            liveness_path: default_liveness_path(),
            readiness_path: default_readiness_path(),
        }
    }
}

fn default_liveness_path() -> String {
    DEFAULT_LIVENESS_PATH.to_string()
}

fn default_readiness_path() -> String {
    DEFAULT_READINESS_PATH.to_string()
}

/// Where the service's database comes from: set exactly one of `ref` and `template`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSource {
    /// Name of a `Database` in this namespace whose `spec.owner` is this service.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A `Database` spec without `owner`: the operator creates the `Database` `<service>-db`,
    /// owned by this Service (deleted with it, then `deletionPolicy` decides about the data).
    /// Its credentials Secret is `<service>-db` unless `credentials.secretName` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<DatabaseTemplate>,
}

/// The spec of a `Database` the operator creates for a service (its owner is the service).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseTemplate {
    /// `postgres` or `mongodb`.
    pub engine: Engine,
    /// Where the database lives: `serverRef` or `dedicated`, exactly as in a `Database`.
    pub server: ServerBinding,
    /// `Retain` (default) or `Delete`: what happens to the data when the Database goes.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The credentials Secret and its rotation.
    #[serde(default)]
    pub credentials: CredentialsSpec,
}

/// A service this one calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// Name of the `Service` called.
    pub service: String,
    /// Its namespace (default: this service's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Dependency {
    /// The namespace of the dependency, given the depending service's.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }
}

/// The NATS broker: set exactly one of `url` and `secretRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    /// The broker's URL, e.g. `nats://nats.messaging.svc:4222`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A key of a Secret in this namespace holding the URL (for URLs with credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// The broker's port, which the NetworkPolicy lets the pods reach (default: the port of
    /// `url`, else 4222).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// What the operator did and observed for a `Service`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `Ready`, `DatabaseReady`, `Deployed`, `NetworkPolicyApplied`, `Isolated`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The in-cluster URL of the service, `http://<name>.<namespace>.svc:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The service's database and the Secret its login is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<ServiceDatabaseStatus>,
}

/// The database a `Service` uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDatabaseStatus {
    /// Name of the `Database` in the service's namespace.
    pub name: String,
    /// Name of its credentials Secret, once the Database has written it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_has_no_nullable_field_and_names_the_short_name_and_category() {
        let crd = crate::crd::all_crds()
            .into_iter()
            .find(|crd| crd.spec.names.kind == "Service")
            .unwrap();
        let names = &crd.spec.names;
        assert_eq!(
            names.short_names.as_deref(),
            Some(&["ssvc".to_string()][..])
        );
        assert_eq!(names.categories.as_deref(), Some(&["silo".to_string()][..]));
        let text = serde_json::to_string(&crd).unwrap();
        assert!(!text.contains("nullable"), "{text}");
        assert!(
            text.contains("\"template\""),
            "the database template is described"
        );
    }

    #[test]
    fn defaults_fill_port_replicas_and_probes() {
        let service: Service = serde_yaml::from_str(
            "apiVersion: silo.dev/v1alpha1\nkind: Service\nmetadata: {name: user-service, namespace: shop}\n\
             spec: {image: shop/user-service:1, database: {ref: users}}\n",
        )
        .unwrap();
        assert_eq!(service.spec.port, 8080);
        assert_eq!(service.spec.replicas, 1);
        assert_eq!(service.spec.probes, ProbesSpec::default());
        assert_eq!(
            service.spec.database.unwrap().reference.as_deref(),
            Some("users")
        );
    }
}

//! Types shared by `DatabaseServer` and `Database`.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MongoDB.
    Mongodb,
}

impl Engine {
    /// The lower-case name used in labels and URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mongodb => "mongodb",
        }
    }

    /// The port the engine listens on by default.
    pub fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mongodb => 27017,
        }
    }

    /// The version a managed instance runs when the spec names none.
    pub fn default_version(self) -> &'static str {
        match self {
            Engine::Postgres => "16",
            Engine::Mongodb => "7.0",
        }
    }
}

/// A server the operator runs itself (one StatefulSet replica with a persistent volume).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServerSpec {
    /// Engine version, used as the container image tag (PostgreSQL default `16`, MongoDB default `7.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Container image of the server, e.g. `registry.example.com/mirror/postgres:16.4` (default
    /// `<repository>:<version>`, the repository being the operator's
    /// `--postgres-image-repository` / `--mongodb-image-repository`, by default `postgres` /
    /// `mongo`). It must honour the environment contract of the official image of its engine.
    /// When set, `version` does not choose the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Namespace of the server's workload (default `silo-system`). Ignored for a `dedicated`
    /// server, which always lives in the Database's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The persistent volume of the server.
    pub storage: StorageSpec,
    /// CPU and memory requests/limits of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Persistent storage of a managed server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, a Kubernetes quantity such as `10Gi`.
    pub size: String,
    /// Storage class of the volume (the cluster default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// An existing server the operator only provisions on (a cloud database, a server run by hand).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalServerSpec {
    /// Host name or IP address clients and the operator connect to.
    pub host: String,
    /// TCP port (the engine's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Secret holding the administrator login under the keys `username` and `password`, in
    /// the operator's namespace.
    pub admin_secret_ref: SecretReference,
    /// TLS settings for connections to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// A reference to an admin Secret, which lives in the operator's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace: the operator's own (default `silo-system`), which is also what
    /// an absent namespace means. Any other is refused: whoever may create a DatabaseServer
    /// could otherwise make the operator read any Secret and send it to a host of their choosing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// TLS settings for connections to a server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// `disable`, `require` (encrypt, do not verify) or `verify-full` (encrypt and verify the host).
    #[serde(default)]
    pub mode: TlsMode,
}

/// How connections to a server use TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// Encrypted, certificate not verified.
    #[default]
    Require,
    /// Encrypted, certificate and host name verified.
    VerifyFull,
}

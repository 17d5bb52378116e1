//! `Database`: a database owned by one service, with a login only that service gets.

// kube-derive repeats `type_` in every `printcolumn`, which clippy mistakes for a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Engine, ManagedServerSpec};

/// A database owned by one service: an isolated database on a server, a least-privilege login
/// for it, and a Secret in this namespace that carries the login.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "silo.dev",
    version = "v1alpha1",
    kind = "Database",
    namespaced,
    status = "DatabaseStatus",
    shortname = "sdb",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "Server", type_ = "string", json_path = ".status.server"),
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
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// `postgres` or `mongodb`; must match the server's engine. Immutable.
    pub engine: Engine,
    /// Name of the service that owns this database: its pods carry the label
    /// `silo.dev/service=<owner>`, which the NetworkPolicy of a Silo-run server admits. A DNS
    /// label: 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or
    /// digit.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub owner: String,
    /// Where the database lives. Immutable.
    pub server: ServerBinding,
    /// What happens on the server when this resource is deleted: `Retain` (default) keeps the
    /// database and its role, `Delete` drops both.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The Secret that receives the login, and its rotation.
    #[serde(default)]
    pub credentials: CredentialsSpec,
}

/// Where a database lives: set exactly one of `serverRef` and `dedicated`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerBinding {
    /// Name of a `DatabaseServer`: a logical database on a shared server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ref: Option<String>,
    /// A server run just for this database, in this namespace, deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated: Option<ManagedServerSpec>,
}

/// What happens on the server when a `Database` is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the database and role on the server.
    #[default]
    Retain,
    /// Terminate the role's connections, drop the database, then the role.
    Delete,
}

/// The credentials Secret and its rotation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// Name of the Secret (default `<name>-db`). Keys: `username`, `password`, `host`, `port`,
    /// `database`, `uri` and, for PostgreSQL, `jdbc-uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Set a new password when this much time has passed since the last one, e.g. `720h`.
    /// Annotating the Database with `silo.dev/rotate=<new value>` rotates at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_every: Option<String>,
}

/// Where clients connect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Host name clients connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name on the server.
    pub database: String,
}

/// What the operator did and observed for a `Database`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// `Ready`, `ServerReady`, `Provisioned`, `CredentialsReady`, `NetworkIsolated`, `AccessVerified`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The server this database lives on: a `DatabaseServer` name, or `dedicated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Where clients connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// The Secret holding the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The database name used on the server; chosen once and never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// The role (PostgreSQL) or user (MongoDB) name used on the server; chosen once and never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// When the password was last set (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    /// The value of the `silo.dev/rotate` annotation that the last rotation honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_token: Option<String>,
    /// The engine this database was created with (guards immutability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_engine: Option<Engine>,
    /// The server this database was created on: `serverRef/<name>` or `dedicated` (guards immutability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_server: Option<String>,
}

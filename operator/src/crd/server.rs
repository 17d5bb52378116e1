//! `DatabaseServer`: an engine instance that databases live on.

// kube-derive repeats `type_` in every `printcolumn`, which clippy mistakes for a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Engine, ExternalServerSpec, ManagedServerSpec};

/// An engine instance that `Database` resources are provisioned on. Set exactly one of
/// `managed` (the operator runs it) or `external` (it exists already).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "silo.dev",
    version = "v1alpha1",
    kind = "DatabaseServer",
    status = "DatabaseServerStatus",
    shortname = "dbserver",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.type"),
    printcolumn(name = "Host", type_ = "string", json_path = ".status.host"),
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
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseServerSpec {
    /// `postgres` or `mongodb`.
    pub engine: Engine,
    /// The operator runs this server: a one-replica StatefulSet, a headless Service, a volume
    /// and an admin Secret with a generated password, in `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedServerSpec>,
    /// The server exists already; the operator connects with the admin login of `adminSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalServerSpec>,
}

/// What the operator observed about a `DatabaseServer`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseServerStatus {
    /// `Ready` and `Reachable`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `managed` (the operator runs it) or `external`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub server_type: Option<ServerType>,
    /// Host name clients connect to (for a managed server, its in-cluster Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The server version the operator saw when it last connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Namespace the workload of a managed server was created in; its volume stays there, so
    /// `spec.managed.namespace` cannot move it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_namespace: Option<String>,
}

/// Who runs a `DatabaseServer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerType {
    /// The operator runs it (`spec.managed`).
    Managed,
    /// It exists already (`spec.external`).
    External,
}

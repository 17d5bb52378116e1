//! The custom resource types: `DatabaseServer` (cluster-scoped) and `Database` (namespaced).

mod database;
mod server;
mod shared;

pub use database::{
    CredentialsSpec, Database, DatabaseSpec, DatabaseStatus, DeletionPolicy, Endpoint,
    ServerBinding,
};
pub use server::{DatabaseServer, DatabaseServerSpec, DatabaseServerStatus};
pub use shared::{
    Engine, ExternalServerSpec, ManagedServerSpec, SecretReference, StorageSpec, TlsMode, TlsSpec,
};

/// The API group of every Silo resource.
pub const GROUP: &str = "silo.dev";

/// Every CRD this operator serves, in the order `silo-operator crd` writes them.
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![DatabaseServer::crd(), Database::crd()]
}

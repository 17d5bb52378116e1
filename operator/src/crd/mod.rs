//! The custom resource types: `DatabaseServer` (cluster-scoped), `Database` and `Service`
//! (namespaced).

mod database;
mod published_schema;
mod server;
mod service;
mod shared;

pub use database::{
    CredentialsSpec, Database, DatabaseSpec, DatabaseStatus, DeletionPolicy, Endpoint,
    ServerBinding,
};
pub use server::{DatabaseServer, DatabaseServerSpec, DatabaseServerStatus, ServerType};
pub use service::{
    BrokerSpec, DEFAULT_BROKER_PORT, DatabaseSource, DatabaseTemplate, Dependency, ProbesSpec,
    SecretKeyRef, Service, ServiceDatabaseStatus, ServiceEnvVar, ServiceSpec, ServiceStatus,
};
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
    vec![DatabaseServer::crd(), Database::crd(), Service::crd()]
        .into_iter()
        .map(published_schema::without_nullable)
        .collect()
}

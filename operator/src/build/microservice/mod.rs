//! The objects a `Service` runs as: ServiceAccount, Deployment, ClusterIP Service,
//! NetworkPolicy and, from a template, its `Database`. Pure: a validated and resolved
//! [`Microservice`] in, objects out.

mod cluster_ip;
mod database;
mod deployment;
mod network_policy;
mod service_account;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub use cluster_ip::cluster_ip_service;
pub use database::{owned_database, owned_database_name};
pub use deployment::{ROTATION_ANNOTATION, deployment, url_variable};
pub use network_policy::{INGRESS_NAMESPACE_LABEL, service_network_policy};
pub use service_account::service_account;

use super::{AllowedClient, MANAGED_BY, SERVICE_LABEL};
use crate::crd::{ProbesSpec, SecretKeyRef, ServiceEnvVar};
use crate::isolation::DatabaseLocation;

/// Name of the container port (and of the ClusterIP Service's port) of a service.
pub const HTTP_PORT_NAME: &str = "http";

/// A `Service` ready to be built: validated, with everything it refers to looked up.
#[derive(Clone, Debug, PartialEq)]
pub struct Microservice {
    /// Name of the Service and of every object built for it.
    pub name: String,
    /// Namespace of all of them.
    pub namespace: String,
    /// The `Service` as controller owner.
    pub owner: OwnerReference,
    /// Container image.
    pub image: String,
    /// Port it listens on.
    pub port: u16,
    /// Number of pods.
    pub replicas: i32,
    /// Extra environment variables (validated: unique, none the operator sets).
    pub env: Vec<ServiceEnvVar>,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Probe paths.
    pub probes: ProbesSpec,
    /// Its database, if it has one.
    pub database: Option<DatabaseWiring>,
    /// The services it calls.
    pub dependencies: Vec<Dependency>,
    /// The services that call it (their `dependsOn` names it).
    pub callers: Vec<AllowedClient>,
    /// The broker, if any.
    pub broker: Option<Broker>,
    /// Whether `silo.dev/ingress=true` namespaces may call it.
    pub exposed: bool,
}

/// How a service reaches its database.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseWiring {
    /// Name of the `Database`.
    pub name: String,
    /// The credentials Secret, once the Database has written it.
    pub credentials: Option<Credentials>,
    /// Where the database listens.
    pub location: DatabaseLocation,
}

/// The credentials Secret of a service's database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The Secret's name; `DATABASE_URL` is its key `uri`.
    pub secret_name: String,
    /// When the password in it was last set (the Database's `status.lastRotation`): a change
    /// rolls the pods.
    pub rotation: String,
}

/// A service called over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The port it listens on.
    pub port: u16,
}

impl Dependency {
    /// `http://<name>.<namespace>.svc:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}.{}.svc:{}", self.name, self.namespace, self.port)
    }
}

/// Where the broker's URL comes from, and the port its NetworkPolicy must open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    /// The URL or the Secret key holding it.
    pub url: BrokerUrl,
    /// The broker's port.
    pub port: u16,
}

/// The broker's URL: given, or in a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerUrl {
    /// Literal.
    Literal(String),
    /// A key of a Secret.
    Secret(SecretKeyRef),
}

impl Microservice {
    /// The Deployment can be built: there is no database, or its credentials exist.
    pub fn can_deploy(&self) -> bool {
        self.database
            .as_ref()
            .is_none_or(|db| db.credentials.is_some())
    }

    /// `http://<name>.<namespace>.svc:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}.{}.svc:{}", self.name, self.namespace, self.port)
    }

    /// Labels selecting the service's pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(SERVICE_LABEL.to_string(), self.name.clone())])
    }

    /// Labels of every object built for the service, and of its pods.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
        labels.insert("app.kubernetes.io/name".to_string(), self.name.clone());
        labels
    }

    /// The metadata every object of the service carries, under `name`.
    fn metadata(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(),
            "ownerReferences": [self.owner],
        })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A `Microservice` under construction, for the builders' tests.

    use std::collections::BTreeMap;

    use super::*;

    /// booking-service in `shop`: a dedicated PostgreSQL, calls user-service, called by
    /// payment-service, a NATS broker.
    pub fn booking() -> Microservice {
        Microservice {
            name: "booking-service".into(),
            namespace: "shop".into(),
            owner: OwnerReference {
                api_version: "silo.dev/v1alpha1".into(),
                kind: "Service".into(),
                name: "booking-service".into(),
                uid: "6f1c2d3e-0000-4000-8000-00000000b00c".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            image: "localhost/silo/booking-service:0.1.0".into(),
            port: 8080,
            replicas: 2,
            env: vec![ServiceEnvVar {
                name: "RUST_LOG".into(),
                value: Some("info".into()),
                secret_key_ref: None,
            }],
            resources: None,
            probes: ProbesSpec::default(),
            database: Some(DatabaseWiring {
                name: "booking-service-db".into(),
                credentials: Some(Credentials {
                    secret_name: "booking-service-db".into(),
                    rotation: "2026-11-29T10:00:00Z".into(),
                }),
                location: DatabaseLocation::Pods(crate::isolation::ServerPods {
                    workload: "booking-service-db-dbserver".into(),
                    namespace: "shop".into(),
                    selector: BTreeMap::from([
                        ("app.kubernetes.io/name".into(), "silo-postgres".into()),
                        (
                            "app.kubernetes.io/instance".into(),
                            "booking-service-db-dbserver".into(),
                        ),
                    ]),
                    port: 5432,
                    shared_with: None,
                }),
            }),
            dependencies: vec![Dependency {
                namespace: "shop".into(),
                name: "user-service".into(),
                port: 8080,
            }],
            callers: vec![AllowedClient {
                namespace: "shop".into(),
                owner: "payment-service".into(),
            }],
            broker: Some(Broker {
                url: BrokerUrl::Literal("nats://nats.messaging.svc:4222".into()),
                port: 4222,
            }),
            exposed: true,
        }
    }
}

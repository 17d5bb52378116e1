//! Where a `Database` listens: the pods of a server Silo runs, or an external address.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::build::{AllowedClient, Workload};
use crate::crd::{Database, DatabaseServer};
use crate::image::ImageRepositories;
use crate::validate::{self, Placement, ServerKind};

/// Where a database listens, as far as the network is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// Pods of a server Silo runs: `selector` picks them in `namespace`, the engine listens on
    /// `port`.
    Pods(ServerPods),
    /// A server outside the cluster (or at least outside Silo): only its address is known.
    External {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Not known (yet): the server does not exist or a spec is invalid; says why.
    Unknown(String),
}

/// The pods of a server Silo runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPods {
    /// Name of the server's workload (StatefulSet, Service and NetworkPolicy).
    pub workload: String,
    /// Namespace of its pods.
    pub namespace: String,
    /// Labels selecting its pods.
    pub selector: BTreeMap<String, String>,
    /// The engine's port.
    pub port: u16,
    /// For a shared server, the owners of every database on it (its NetworkPolicy admits them
    /// all); `None` for a server dedicated to one database.
    pub shared_with: Option<Vec<AllowedClient>>,
}

impl DatabaseLocation {
    /// The port clients connect to, if known.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Pods(pods) => Some(pods.port),
            Self::External { port, .. } => Some(*port),
            Self::Unknown(_) => None,
        }
    }
}

/// Where `db` listens. `server` is the `DatabaseServer` it names (if it is on a shared one and
/// that exists); `databases` are the Databases known, to find who else shares that server.
pub fn locate<'a>(
    db: &Database,
    server: Option<&DatabaseServer>,
    databases: impl IntoIterator<Item = &'a Database>,
) -> DatabaseLocation {
    // Images do not change where a server listens or how its pods are labelled.
    let images = ImageRepositories::default();
    let valid = match validate::database(db) {
        Ok(valid) => valid,
        Err(e) => return DatabaseLocation::Unknown(format!("Database {}: {e}", db.name_any())),
    };
    match valid.placement {
        Placement::Dedicated(spec) => match Workload::dedicated(db, &spec, &images) {
            Some(workload) => DatabaseLocation::Pods(server_pods(&workload, None)),
            None => DatabaseLocation::Unknown(format!("Database {} has no uid", db.name_any())),
        },
        Placement::Shared(name) => {
            let Some(server) = server.filter(|s| s.name_any() == name) else {
                return DatabaseLocation::Unknown(format!("DatabaseServer {name} does not exist"));
            };
            match validate::server(server) {
                Ok(ServerKind::Managed(spec)) => match Workload::managed(server, &spec, &images) {
                    Some(workload) => {
                        let owners = owners_on(&name, databases);
                        DatabaseLocation::Pods(server_pods(&workload, Some(owners)))
                    }
                    None => DatabaseLocation::Unknown(format!("DatabaseServer {name} has no uid")),
                },
                Ok(ServerKind::External(external)) => DatabaseLocation::External {
                    port: external.port.unwrap_or(server.spec.engine.default_port()),
                    host: external.host,
                },
                Err(e) => DatabaseLocation::Unknown(format!("DatabaseServer {name}: {e}")),
            }
        }
    }
}

fn server_pods(workload: &Workload, shared_with: Option<Vec<AllowedClient>>) -> ServerPods {
    ServerPods {
        workload: workload.name.clone(),
        namespace: workload.namespace.clone(),
        selector: workload.selector_labels(),
        port: workload.port(),
        shared_with,
    }
}

/// The owners of the databases on server `name`, sorted, each once.
fn owners_on<'a>(
    name: &str,
    databases: impl IntoIterator<Item = &'a Database>,
) -> Vec<AllowedClient> {
    let mut owners: Vec<AllowedClient> = databases
        .into_iter()
        .filter(|db| db.spec.server.server_ref.as_deref() == Some(name))
        .filter(|db| db.metadata.deletion_timestamp.is_none())
        .map(|db| AllowedClient {
            namespace: db.namespace().unwrap_or_default(),
            owner: db.spec.owner.clone(),
        })
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(yaml: &str) -> Database {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn on(server: &str, namespace: &str, owner: &str) -> Database {
        database(&format!(
            "apiVersion: silo.dev/v1alpha1\nkind: Database\n\
             metadata: {{name: {owner}-db, namespace: {namespace}, uid: u-{owner}}}\n\
             spec: {{engine: postgres, owner: {owner}, server: {{serverRef: {server}}}}}\n"
        ))
    }

    fn server(yaml_spec: &str) -> DatabaseServer {
        database_server(&format!(
            "apiVersion: silo.dev/v1alpha1\nkind: DatabaseServer\n\
             metadata: {{name: pg, uid: s-1}}\nspec: {yaml_spec}\n"
        ))
    }

    fn database_server(yaml: &str) -> DatabaseServer {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_dedicated_server_listens_in_pods_of_the_database_namespace() {
        let db = database(
            "apiVersion: silo.dev/v1alpha1\nkind: Database\n\
             metadata: {name: users, namespace: shop, uid: u-1}\n\
             spec: {engine: postgres, owner: user-service, server: {dedicated: {storage: {size: 1Gi}}}}\n",
        );
        let DatabaseLocation::Pods(pods) = locate(&db, None, []) else {
            panic!("dedicated servers run in pods");
        };
        assert_eq!(pods.workload, "users-dbserver");
        assert_eq!(pods.namespace, "shop");
        assert_eq!(pods.port, 5432);
        assert_eq!(pods.shared_with, None);
        assert_eq!(
            pods.selector
                .get("app.kubernetes.io/instance")
                .map(String::as_str),
            Some("users-dbserver")
        );
    }

    #[test]
    fn a_managed_shared_server_is_shared_with_every_owner_on_it() {
        let server = server("{engine: postgres, managed: {storage: {size: 1Gi}}}");
        let mine = on("pg", "shop", "user-service");
        let others = [
            on("pg", "shop", "booking-service"),
            on("other", "shop", "payment-service"),
            mine.clone(),
        ];
        let DatabaseLocation::Pods(pods) = locate(&mine, Some(&server), &others) else {
            panic!("managed servers run in pods");
        };
        assert_eq!(pods.namespace, "silo-system");
        let owners: Vec<&str> = pods
            .shared_with
            .iter()
            .flatten()
            .map(|c| c.owner.as_str())
            .collect();
        assert_eq!(owners, ["booking-service", "user-service"]);
    }

    #[test]
    fn an_external_server_has_only_an_address_and_a_missing_one_is_unknown() {
        let server = server(
            "{engine: postgres, external: {host: 10.0.0.5, adminSecretRef: {name: a, namespace: b}}}",
        );
        let db = on("pg", "shop", "user-service");
        assert_eq!(
            locate(&db, Some(&server), []),
            DatabaseLocation::External {
                host: "10.0.0.5".into(),
                port: 5432
            }
        );
        assert!(matches!(
            locate(&db, None, []),
            DatabaseLocation::Unknown(_)
        ));
    }
}

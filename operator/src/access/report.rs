//! The audit view of `silo-operator access`: for every Service, who can reach its pods and its
//! database and who cannot, evaluated over the objects of the cluster. Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use serde::Serialize;

use crate::build::microservice::{HTTP_PORT_NAME, owned_database_name};
use crate::build::{AllowedClient, MANAGED_BY, SERVICE_LABEL};
use crate::crd::{Database, DatabaseServer, Service};
use crate::isolation::{DatabaseLocation, Expected, assess, locate, server_pods};
use crate::reachability::{Cluster, ContainerPort, PodEndpoint, Protocol, Scope};
use crate::status::{find, types};

/// The objects a report is made from.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// The Services to report on.
    pub services: Vec<Service>,
    /// Databases (those of the Services, and the others on the same servers).
    pub databases: Vec<Database>,
    /// Every DatabaseServer.
    pub servers: Vec<DatabaseServer>,
    /// Every Pod: any of them may be a caller.
    pub pods: Vec<Pod>,
    /// Every Namespace (their labels).
    pub namespaces: Vec<Namespace>,
    /// Every NetworkPolicy.
    pub policies: Vec<NetworkPolicy>,
}

/// The report: one entry per Service, sorted by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessReport {
    /// The Services.
    pub services: Vec<ServiceAccess>,
}

/// Who reaches one Service and its database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccess {
    /// The Service's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// Its pods (`<namespace>/<pod>`); empty while none runs (a pod with its labels stands in).
    pub pods: Vec<String>,
    /// Callers of its port: who can and who cannot.
    pub callers: Reach,
    /// Its database, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseAccess>,
}

/// Who can and who cannot open a connection. A caller is a Silo service
/// (`<namespace>/<service>`, its pods labelled `silo.dev/service`), the operator (`<namespace>
/// (operator)`, any other pod of its namespace) or another pod (`<namespace>/<pod> (pod)`).
/// Host-network pods are node traffic, which NetworkPolicy cannot fence, and are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    /// Callers with at least one pod that can connect, from any namespace.
    pub allowed: Vec<String>,
    /// Callers of the reported namespaces none of whose pods can connect.
    pub denied: Vec<String>,
}

/// Who reaches a Service's database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseAccess {
    /// The `Database`'s name.
    pub name: String,
    /// `dedicated`, `shared` (a shared server Silo runs), `external` or `unknown`.
    pub placement: &'static str,
    /// The port it listens on, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Who can and cannot reach its port (for a server Silo runs; empty otherwise).
    pub callers: Reach,
    /// The `Isolated` verdict.
    pub isolated: bool,
    /// Its reason.
    pub reason: &'static str,
    /// Its message.
    pub message: String,
}

/// The report on the Services of `inventory` in `scope`.
pub fn report(inventory: &Inventory, scope: &Scope, operator_namespace: &str) -> AccessReport {
    let cluster = Cluster::new(&inventory.namespaces, &inventory.pods, &inventory.policies);
    let mut services: Vec<ServiceAccess> = inventory
        .services
        .iter()
        .filter(|s| scope.contains(&s.namespace().unwrap_or_default()))
        .filter_map(|s| service_access(&cluster, inventory, s, scope, operator_namespace))
        .collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    AccessReport { services }
}

fn service_access(
    cluster: &Cluster,
    inventory: &Inventory,
    service: &Service,
    scope: &Scope,
    operator_namespace: &str,
) -> Option<ServiceAccess> {
    let namespace = service.namespace()?;
    let name = service.name_any();
    let port = u16::try_from(service.spec.port).ok()?;
    let mut targets: Vec<PodEndpoint> = cluster
        .pods()
        .iter()
        .filter(|p| p.namespace == namespace && p.labels.get(SERVICE_LABEL) == Some(&name))
        .cloned()
        .collect();
    let pods = targets.iter().map(PodEndpoint::key).collect();
    if targets.is_empty() {
        targets.push(stand_in_service_pod(&namespace, &name, port));
    }
    let owner = AllowedClient {
        namespace: namespace.clone(),
        owner: name.clone(),
    };
    let database = database_of(inventory, service)
        .map(|db| database_access(cluster, inventory, db, &owner, scope, operator_namespace));
    Some(ServiceAccess {
        callers: reach(cluster, &targets, port, scope, operator_namespace),
        namespace,
        name,
        port,
        pods,
        database,
    })
}

/// A pod as the Deployment of the service would make it.
fn stand_in_service_pod(namespace: &str, name: &str, port: u16) -> PodEndpoint {
    PodEndpoint {
        namespace: namespace.to_string(),
        name: format!("{name}-(no pod yet)"),
        labels: BTreeMap::from([
            (SERVICE_LABEL.to_string(), name.to_string()),
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            ("app.kubernetes.io/name".to_string(), name.to_string()),
        ]),
        ips: Vec::new(),
        ports: vec![ContainerPort {
            name: HTTP_PORT_NAME.to_string(),
            number: port,
            protocol: Protocol::Tcp,
        }],
        host_network: false,
        node: None,
    }
}

fn database_of<'a>(inventory: &'a Inventory, service: &Service) -> Option<&'a Database> {
    let source = service.spec.database.as_ref()?;
    let name = match (&source.reference, &source.template) {
        (Some(name), _) => name.clone(),
        (None, Some(_)) => owned_database_name(&service.name_any()),
        (None, None) => return None,
    };
    inventory
        .databases
        .iter()
        .find(|db| db.name_any() == name && db.namespace() == service.namespace())
}

fn database_access(
    cluster: &Cluster,
    inventory: &Inventory,
    db: &Database,
    owner: &AllowedClient,
    scope: &Scope,
    operator_namespace: &str,
) -> DatabaseAccess {
    let server = db
        .spec
        .server
        .server_ref
        .as_deref()
        .and_then(|name| inventory.servers.iter().find(|s| s.name_any() == name));
    let location = locate(db, server, &inventory.databases);
    let conditions = db
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let expected = Expected {
        owner,
        operator_namespace,
        access_verified: find(conditions, types::ACCESS_VERIFIED).map(|c| c.status == "True"),
    };
    let verdict = assess(cluster, &location, &expected);
    let (placement, callers) = match &location {
        DatabaseLocation::Pods(pods) => (
            if pods.shared_with.is_some() {
                "shared"
            } else {
                "dedicated"
            },
            reach(
                cluster,
                &server_pods(cluster, pods),
                pods.port,
                scope,
                operator_namespace,
            ),
        ),
        DatabaseLocation::External { .. } => ("external", Reach::default()),
        DatabaseLocation::Unknown(_) => ("unknown", Reach::default()),
    };
    DatabaseAccess {
        name: db.name_any(),
        placement,
        port: location.port(),
        callers,
        isolated: verdict.isolated,
        reason: verdict.reason,
        message: verdict.message,
    }
}

/// What marks a caller that is a pod, not a Silo service.
pub const POD_SUFFIX: &str = " (pod)";

/// The caller a pod counts as: a Silo service, the operator (any pod of its namespace), or a
/// pod.
fn caller(pod: &PodEndpoint, operator_namespace: &str) -> String {
    match pod.labels.get(SERVICE_LABEL) {
        Some(service) => format!("{}/{service}", pod.namespace),
        None if pod.namespace == operator_namespace => format!("{} (operator)", pod.namespace),
        None => format!("{}{POD_SUFFIX}", pod.key()),
    }
}

/// Who among the cluster's pods can reach any of `targets` (the targets themselves and other
/// replicas of the same service left out).
fn reach(
    cluster: &Cluster,
    targets: &[PodEndpoint],
    port: u16,
    scope: &Scope,
    operator_namespace: &str,
) -> Reach {
    let replica = |source: &PodEndpoint| {
        targets.iter().any(|target| {
            target.is_same_pod(source)
                || (target.namespace == source.namespace
                    && target.labels.contains_key(SERVICE_LABEL)
                    && target.labels.get(SERVICE_LABEL) == source.labels.get(SERVICE_LABEL))
        })
    };
    let mut allowed = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for source in cluster.pods() {
        if source.host_network || replica(source) {
            continue;
        }
        let who = caller(source, operator_namespace);
        if targets
            .iter()
            .any(|target| cluster.allows(source, target, port, Protocol::Tcp))
        {
            allowed.insert(who.clone());
        }
        if scope.contains(&source.namespace) {
            seen.insert(who);
        }
    }
    let denied = seen.difference(&allowed).cloned().collect();
    Reach {
        allowed: allowed.into_iter().collect(),
        denied,
    }
}

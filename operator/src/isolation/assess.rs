//! The verdict behind `Isolated`: can any pod but the owner's (and the operator's) reach the
//! port of the owner's database?

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{DatabaseLocation, ServerPods};
use crate::build::{AllowedClient, SERVICE_LABEL};
use crate::reachability::{Cluster, PodEndpoint, PolicyRef, Protocol};

/// Reasons of the `Isolated` condition.
pub mod reasons {
    /// Only the owner's pods and the operator's namespace reach the database's pods.
    pub const ONLY_OWNER_REACHES: &str = "OnlyOwnerReaches";
    /// A NetworkPolicy lets other pods reach the database's pods.
    pub const OPENED_BY_POLICY: &str = "OpenedByPolicy";
    /// No NetworkPolicy isolates the database's pods for ingress: every pod reaches them.
    pub const NOT_FENCED: &str = "NotFenced";
    /// A shared server: the other owners on it reach its port; only the database's
    /// privileges (`AccessVerified`) keep them out.
    pub const SHARED_SERVER: &str = "SharedServer";
    /// An external server: no pods to evaluate; only the database's privileges are measured.
    pub const DATABASE_LEVEL_ONLY: &str = "DatabaseLevelOnly";
    /// Where the database listens is not known yet.
    pub const NOT_MEASURED: &str = "NotMeasured";
    /// The service has no database.
    pub const NO_DATABASE: &str = "NoDatabase";
}

/// How many pods a message names before it only counts the rest.
const NAMED_IN_MESSAGE: usize = 3;

/// A pod that can reach a database pod although it should not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForeignReach {
    /// `<namespace>/<pod>` of the source.
    pub source: String,
    /// `<namespace>/<pod>` of the database pod it reaches.
    pub target: String,
    /// The NetworkPolicies admitting it into the database pod (empty: none isolates it).
    pub opened_by: Vec<String>,
}

/// The outcome for one database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    /// The `Isolated` status.
    pub isolated: bool,
    /// The condition reason (see [`reasons`]).
    pub reason: &'static str,
    /// The condition message.
    pub message: String,
    /// Pods that reach the database but should not.
    pub foreign: Vec<ForeignReach>,
}

/// Who is expected to reach a service's database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The owning service's pods.
    pub owner: &'a AllowedClient,
    /// The operator's namespace: its pods provision and check the database.
    pub operator_namespace: &'a str,
    /// `AccessVerified` of the Database, when known: what a shared or external server can
    /// report at best.
    pub access_verified: Option<bool>,
}

/// Assesses the database at `location` over the pods and policies of `cluster`.
pub fn assess(
    cluster: &Cluster,
    location: &DatabaseLocation,
    expected: &Expected<'_>,
) -> Assessment {
    match location {
        DatabaseLocation::Pods(pods) => assess_pods(cluster, pods, expected),
        DatabaseLocation::External { host, port } => database_level(
            expected,
            reasons::DATABASE_LEVEL_ONLY,
            format!(
                "the database is on the external server {host}:{port}: there are no pods to evaluate, so isolation is by database privileges only"
            ),
        ),
        DatabaseLocation::Unknown(why) => Assessment {
            isolated: false,
            reason: reasons::NOT_MEASURED,
            message: format!("cannot tell where the database listens: {why}"),
            foreign: Vec::new(),
        },
    }
}

fn database_level(expected: &Expected<'_>, reason: &'static str, situation: String) -> Assessment {
    let measured = match expected.access_verified {
        Some(true) => {
            "the server's catalog shows that only the owner's login can reach the database (AccessVerified=True)"
        }
        Some(false) => {
            "the server's catalog shows other logins that can reach the database (AccessVerified=False)"
        }
        None => "the database's privileges are not verified yet",
    };
    Assessment {
        isolated: expected.access_verified == Some(true),
        reason,
        message: format!("{situation}; {measured}"),
        foreign: Vec::new(),
    }
}

fn assess_pods(cluster: &Cluster, server: &ServerPods, expected: &Expected<'_>) -> Assessment {
    let mut allowed: Vec<&AllowedClient> = vec![expected.owner];
    allowed.extend(server.shared_with.iter().flatten());
    let is_expected = |pod: &PodEndpoint| {
        pod.host_network
            || pod.namespace == expected.operator_namespace
            || runs_server(pod, server)
            || allowed.iter().any(|client| {
                pod.namespace == client.namespace
                    && pod.labels.get(SERVICE_LABEL) == Some(&client.owner)
            })
    };
    let mut foreign = Vec::new();
    for target in server_pods(cluster, server) {
        for (source, verdict) in cluster.sources_reaching(&target, server.port, Protocol::Tcp) {
            if is_expected(source) {
                continue;
            }
            foreign.push(ForeignReach {
                source: source.key(),
                target: target.key(),
                opened_by: verdict
                    .ingress
                    .admitting_policies()
                    .iter()
                    .map(PolicyRef::to_string)
                    .collect(),
            });
        }
    }
    if foreign.is_empty() {
        return isolated_verdict(server, expected);
    }
    opened_verdict(server, foreign)
}

fn isolated_verdict(server: &ServerPods, expected: &Expected<'_>) -> Assessment {
    let owner = expected.owner;
    match &server.shared_with {
        Some(owners) => {
            let others = owners.iter().filter(|c| *c != owner).count();
            database_level(
                expected,
                reasons::SHARED_SERVER,
                format!(
                    "the server {}/{} is shared: pods of the {others} other service(s) with a database on it can reach its port {}",
                    server.namespace, server.workload, server.port
                ),
            )
        }
        None => Assessment {
            isolated: true,
            reason: reasons::ONLY_OWNER_REACHES,
            message: format!(
                "only pods of {}/{} and of the operator's namespace {} can reach port {} of the database server {}/{}",
                owner.namespace,
                owner.owner,
                expected.operator_namespace,
                server.port,
                server.namespace,
                server.workload,
            ),
            foreign: Vec::new(),
        },
    }
}

fn opened_verdict(server: &ServerPods, foreign: Vec<ForeignReach>) -> Assessment {
    let policies: BTreeSet<&str> = foreign
        .iter()
        .flat_map(|reach| reach.opened_by.iter().map(String::as_str))
        .collect();
    let sources: BTreeMap<&str, &ForeignReach> =
        foreign.iter().map(|r| (r.source.as_str(), r)).collect();
    let mut named: Vec<String> = sources
        .keys()
        .take(NAMED_IN_MESSAGE)
        .map(|s| s.to_string())
        .collect();
    if sources.len() > NAMED_IN_MESSAGE {
        named.push(format!("{} more", sources.len() - NAMED_IN_MESSAGE));
    }
    let (reason, cause) = if policies.is_empty() {
        (
            reasons::NOT_FENCED,
            "no NetworkPolicy isolates the database pods for ingress".to_string(),
        )
    } else {
        let list: Vec<&str> = policies.into_iter().collect();
        (
            reasons::OPENED_BY_POLICY,
            format!("opened by NetworkPolicy {}", list.join(", ")),
        )
    };
    Assessment {
        isolated: false,
        reason,
        message: format!(
            "other pods can reach port {} of the database server {}/{}: {} ({cause})",
            server.port,
            server.namespace,
            server.workload,
            named.join(", ")
        ),
        foreign,
    }
}

/// Whether `pod` is one of the server's own pods.
fn runs_server(pod: &PodEndpoint, server: &ServerPods) -> bool {
    pod.namespace == server.namespace
        && server
            .selector
            .iter()
            .all(|(key, value)| pod.labels.get(key) == Some(value))
}

/// The server's pods in `cluster`; while it has none, one that carries its labels stands in,
/// so the policies are judged before the pod exists.
pub fn server_pods(cluster: &Cluster, server: &ServerPods) -> Vec<PodEndpoint> {
    let running: Vec<PodEndpoint> = cluster
        .pods()
        .iter()
        .filter(|pod| runs_server(pod, server))
        .cloned()
        .collect();
    if !running.is_empty() {
        return running;
    }
    vec![PodEndpoint {
        namespace: server.namespace.clone(),
        name: format!("{}-0", server.workload),
        labels: server.selector.clone(),
        ips: Vec::new(),
        ports: Vec::new(),
        host_network: false,
        node: None,
    }]
}

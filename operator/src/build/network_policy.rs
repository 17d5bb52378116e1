//! The NetworkPolicy that admits only the owning services (and the operator) to a server.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::{SERVICE_LABEL, Workload};

/// A service allowed to reach a server: pods labelled `silo.dev/service=<owner>` in `namespace`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllowedClient {
    /// Namespace of the service's pods.
    pub namespace: String,
    /// Owner name (value of `silo.dev/service`).
    pub owner: String,
}

/// Label every namespace carries with its own name (Kubernetes 1.21+ sets it automatically;
/// older clusters need it set by hand, see docs/operator.md).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Ingress to the engine port only from `clients` and from the operator's namespace.
///
/// A client in the server's own namespace (always so for a dedicated server) is matched by a
/// pod selector alone, which needs no namespace label and so works on every Kubernetes version.
pub fn network_policy(
    workload: &Workload,
    clients: &[AllowedClient],
    operator_namespace: &str,
) -> Result<NetworkPolicy, serde_json::Error> {
    let mut clients = clients.to_vec();
    clients.sort();
    clients.dedup();
    let mut peers: Vec<serde_json::Value> = clients
        .iter()
        .map(|client| {
            let pods = json!({ "matchLabels": { SERVICE_LABEL: client.owner } });
            if client.namespace == workload.namespace {
                json!({ "podSelector": pods })
            } else {
                json!({
                    "namespaceSelector": { "matchLabels": { NAMESPACE_NAME_LABEL: client.namespace } },
                    "podSelector": pods,
                })
            }
        })
        .collect();
    peers.push(json!({
        "namespaceSelector": { "matchLabels": { NAMESPACE_NAME_LABEL: operator_namespace } },
    }));
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": workload.labels(),
            "ownerReferences": [workload.owner],
        },
        "spec": {
            "podSelector": { "matchLabels": workload.selector_labels() },
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": peers,
                "ports": [ { "protocol": "TCP", "port": workload.port() } ],
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{assert_matches, load};
    use crate::crd::{Database, DatabaseServer};

    #[test]
    fn dedicated_server_admits_only_its_owner_and_the_operator() {
        let db: Database = load("dedicated-postgres.database.yaml");
        let spec = db.spec.server.dedicated.clone().unwrap();
        let workload = Workload::dedicated(&db, &spec, &Default::default()).unwrap();
        let client = AllowedClient {
            namespace: "shop".into(),
            owner: "user-service".into(),
        };
        let built = network_policy(&workload, &[client], "silo-system").unwrap();
        assert_matches(&built, "dedicated-postgres.networkpolicy.yaml");
    }

    #[test]
    fn shared_server_admits_each_owner_once_in_a_stable_order() {
        let server: DatabaseServer = load("managed-postgres.server.yaml");
        let spec = server.spec.managed.clone().unwrap();
        let workload = Workload::managed(&server, &spec, &Default::default()).unwrap();
        let client = |ns: &str, owner: &str| AllowedClient {
            namespace: ns.into(),
            owner: owner.into(),
        };
        let built = network_policy(
            &workload,
            &[
                client("shop", "payment"),
                client("shop", "booking"),
                client("shop", "payment"),
            ],
            "silo-system",
        )
        .unwrap();
        let from = &built.spec.unwrap().ingress.unwrap()[0]
            .from
            .clone()
            .unwrap();
        assert_eq!(from.len(), 3);
        let owner_of = |i: usize| {
            from[i]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()[SERVICE_LABEL]
                .clone()
        };
        assert_eq!(owner_of(0), "booking");
        assert_eq!(owner_of(1), "payment");
        assert!(from[2].pod_selector.is_none());
    }

    #[test]
    fn only_clients_of_other_namespaces_are_matched_by_namespace_label() {
        let server: DatabaseServer = load("managed-postgres.server.yaml");
        let spec = server.spec.managed.clone().unwrap();
        let workload = Workload::managed(&server, &spec, &Default::default()).unwrap();
        let local = AllowedClient {
            namespace: workload.namespace.clone(),
            owner: "booking".into(),
        };
        let remote = AllowedClient {
            namespace: format!("{}-other", workload.namespace),
            owner: "payment".into(),
        };
        let built = network_policy(&workload, &[local, remote.clone()], "silo-system").unwrap();
        let from = built.spec.unwrap().ingress.unwrap()[0]
            .from
            .clone()
            .unwrap();
        assert!(from[0].namespace_selector.is_none(), "{:?}", from[0]);
        let remote_namespace = from[1]
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .map(|labels| labels[NAMESPACE_NAME_LABEL].clone());
        assert_eq!(remote_namespace, Some(remote.namespace));
    }
}

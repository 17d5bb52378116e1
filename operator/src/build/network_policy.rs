//! The NetworkPolicy that admits only the owning services (and the operator) to a server.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::{OPERATOR_POD_LABEL, SERVICE_LABEL, Workload};

/// A service allowed to reach a server: pods labelled `silo.dev/service=<owner>` in `namespace`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllowedClient {
    /// Namespace of the service's pods.
    pub namespace: String,
    /// Owner name (value of `silo.dev/service`).
    pub owner: String,
}

impl AllowedClient {
    /// The NetworkPolicy peer selecting this service's pods, in a policy of `policy_namespace`.
    /// A client in that namespace is matched by a pod selector alone, which needs no namespace
    /// label and so works on every Kubernetes version.
    pub fn peer(&self, policy_namespace: &str) -> serde_json::Value {
        pods_peer(
            &self.namespace,
            &json!({ SERVICE_LABEL: self.owner }),
            policy_namespace,
        )
    }
}

/// The peer selecting pods labelled `labels` in `namespace`, in a policy of `policy_namespace`.
pub fn pods_peer(
    namespace: &str,
    labels: &serde_json::Value,
    policy_namespace: &str,
) -> serde_json::Value {
    let pods = json!({ "matchLabels": labels });
    if namespace == policy_namespace {
        json!({ "podSelector": pods })
    } else {
        json!({
            "namespaceSelector": { "matchLabels": { NAMESPACE_NAME_LABEL: namespace } },
            "podSelector": pods,
        })
    }
}

/// Label every namespace carries with its own name (Kubernetes 1.21+ sets it automatically;
/// older clusters need it set by hand, see docs/operator.md).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Ingress to the engine port only from `clients` and from the operator's pods (labelled
/// [`OPERATOR_POD_LABEL`] in `operator_namespace`, both in one peer: other pods of that
/// namespace, managed servers among them, are not admitted).
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
        .map(|client| client.peer(&workload.namespace))
        .collect();
    peers.push(pods_peer(
        operator_namespace,
        &json!({ OPERATOR_POD_LABEL.0: OPERATOR_POD_LABEL.1 }),
        &workload.namespace,
    ));
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
        assert_eq!(
            from[2]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()[OPERATOR_POD_LABEL.0],
            OPERATOR_POD_LABEL.1
        );
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

    /// What a server's policy admits, judged by the NetworkPolicy evaluator over real pods
    /// rather than by the shape of the policy.
    mod admits {
        use std::collections::BTreeSet;

        use k8s_openapi::api::core::v1::Pod;
        use serde_json::json;

        use super::*;
        use crate::reachability::{Cluster, Protocol};

        fn pod(namespace: &str, name: &str, labels: serde_json::Value) -> Pod {
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": namespace, "labels": labels },
                "spec": { "containers": [ { "name": "main", "image": "x" } ] },
                "status": { "phase": "Running" },
            }))
            .unwrap()
        }

        /// The pods that can open a connection to the server pod of `workload` under `policy`.
        fn reaching(
            workload: &Workload,
            policy: NetworkPolicy,
            others: Vec<Pod>,
        ) -> BTreeSet<String> {
            let server = pod(
                &workload.namespace,
                &format!("{}-0", workload.name),
                serde_json::to_value(workload.labels()).unwrap(),
            );
            let mut pods = others;
            pods.push(server);
            let cluster = Cluster::new(&[], &pods, &[policy]);
            let target = cluster
                .pod(&workload.namespace, &format!("{}-0", workload.name))
                .unwrap()
                .clone();
            cluster
                .sources_reaching(&target, workload.port(), Protocol::Tcp)
                .into_iter()
                .map(|(source, _)| source.key())
                .collect()
        }

        fn operator_labels() -> serde_json::Value {
            json!({ OPERATOR_POD_LABEL.0: OPERATOR_POD_LABEL.1 })
        }

        #[test]
        fn a_dedicated_server_admits_its_owner_and_the_operators_pods_only() {
            let db: crate::crd::Database = load("dedicated-postgres.database.yaml");
            let spec = db.spec.server.dedicated.clone().unwrap();
            let workload = Workload::dedicated(&db, &spec, &Default::default()).unwrap();
            let owner = AllowedClient {
                namespace: "shop".into(),
                owner: "user-service".into(),
            };
            let policy = network_policy(&workload, &[owner], "silo-system").unwrap();
            let others = vec![
                pod(
                    "shop",
                    "user-service-1",
                    json!({ SERVICE_LABEL: "user-service" }),
                ),
                pod(
                    "shop",
                    "booking-1",
                    json!({ SERVICE_LABEL: "booking-service" }),
                ),
                pod("shop", "unlabelled", json!({})),
                // The owner's label in another namespace is another service.
                pod(
                    "elsewhere",
                    "user-service-1",
                    json!({ SERVICE_LABEL: "user-service" }),
                ),
                pod("silo-system", "silo-operator-1", operator_labels()),
                // Managed servers run in the operator's namespace too: they are not the operator.
                pod(
                    "silo-system",
                    "silo-team-pg-0",
                    json!({ "app.kubernetes.io/name": "silo-postgres" }),
                ),
                pod("silo-system", "debug", json!({})),
                // The operator's label outside its namespace is not the operator.
                pod("shop", "impostor", operator_labels()),
            ];
            assert_eq!(
                reaching(&workload, policy, others),
                BTreeSet::from([
                    "shop/user-service-1".to_string(),
                    "silo-system/silo-operator-1".to_string()
                ])
            );
        }

        #[test]
        fn the_owner_and_the_operator_reach_the_engine_port_and_no_other() {
            let db: crate::crd::Database = load("dedicated-mongodb.database.yaml");
            let spec = db.spec.server.dedicated.clone().unwrap();
            let workload = Workload::dedicated(&db, &spec, &Default::default()).unwrap();
            let namespace = workload.namespace.clone();
            let owner = AllowedClient {
                namespace: namespace.clone(),
                owner: db.spec.owner.clone(),
            };
            let policy = network_policy(&workload, &[owner], "silo-system").unwrap();
            let server = pod(
                &namespace,
                "server-0",
                serde_json::to_value(workload.labels()).unwrap(),
            );
            let pods = [
                server,
                pod(
                    &namespace,
                    "owner-1",
                    json!({ SERVICE_LABEL: db.spec.owner }),
                ),
                pod("silo-system", "silo-operator-1", operator_labels()),
            ];
            let cluster = Cluster::new(&[], &pods, &[policy]);
            let at = |name: &str| cluster.pods().iter().find(|p| p.name == name).unwrap();
            let engine_port = workload.port();
            assert_eq!(engine_port, 27017);
            for client in ["owner-1", "silo-operator-1"] {
                let reaches =
                    |port, protocol| cluster.allows(at(client), at("server-0"), port, protocol);
                assert!(reaches(engine_port, Protocol::Tcp), "{client}");
                assert!(!reaches(engine_port, Protocol::Udp), "{client}");
                assert!(!reaches(22, Protocol::Tcp), "{client}");
                assert!(!reaches(5432, Protocol::Tcp), "{client}");
            }
        }

        #[test]
        fn a_shared_server_in_the_operators_namespace_admits_the_owners_and_the_operator_only() {
            let server: DatabaseServer = load("managed-postgres.server.yaml");
            let spec = server.spec.managed.clone().unwrap();
            let workload = Workload::managed(&server, &spec, &Default::default()).unwrap();
            assert_eq!(workload.namespace, "silo-system");
            let client = |ns: &str, owner: &str| AllowedClient {
                namespace: ns.into(),
                owner: owner.into(),
            };
            let policy = network_policy(
                &workload,
                &[client("shop", "booking"), client("billing", "payment")],
                "silo-system",
            )
            .unwrap();
            let others = vec![
                pod("shop", "booking-1", json!({ SERVICE_LABEL: "booking" })),
                pod("billing", "payment-1", json!({ SERVICE_LABEL: "payment" })),
                pod("shop", "payment-1", json!({ SERVICE_LABEL: "payment" })),
                pod("billing", "booking-1", json!({ SERVICE_LABEL: "booking" })),
                pod("silo-system", "silo-operator-1", operator_labels()),
                pod(
                    "silo-system",
                    "silo-other-pg-0",
                    json!({ "app.kubernetes.io/name": "silo-postgres" }),
                ),
            ];
            assert_eq!(
                reaching(&workload, policy, others),
                BTreeSet::from([
                    "billing/payment-1".to_string(),
                    "shop/booking-1".to_string(),
                    "silo-system/silo-operator-1".to_string(),
                ])
            );
        }
    }
}

//! `assess` over small clusters: Silo's own fence, a hand-written policy that re-opens it, a
//! server without any policy, shared and external servers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::*;
use crate::build::AllowedClient;
use crate::reachability::Cluster;

fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": { "containers": [{ "name": "c" }] },
        "status": { "phase": "Running", "podIP": format!("10.0.0.{}", name.len()) },
    }))
    .unwrap()
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap()
}

fn policy(value: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(value).unwrap()
}

fn server() -> ServerPods {
    ServerPods {
        workload: "users-dbserver".into(),
        namespace: "shop".into(),
        selector: BTreeMap::from([("app.kubernetes.io/instance".into(), "users-dbserver".into())]),
        port: 5432,
        shared_with: None,
    }
}

/// Silo's fence of the server: only the owner's pods, in the server's namespace.
fn fence() -> NetworkPolicy {
    policy(json!({
        "metadata": { "name": "users-dbserver", "namespace": "shop" },
        "spec": {
            "podSelector": { "matchLabels": { "app.kubernetes.io/instance": "users-dbserver" } },
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    { "podSelector": { "matchLabels": { "silo.dev/service": "user-service" } } },
                    { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "silo-system" } } },
                ],
                "ports": [{ "port": 5432 }],
            }],
        },
    }))
}

fn allow_all() -> NetworkPolicy {
    policy(json!({
        "metadata": { "name": "allow-everything", "namespace": "shop" },
        "spec": { "podSelector": {}, "ingress": [{}] },
    }))
}

fn pods() -> Vec<Pod> {
    vec![
        pod(
            "shop",
            "users-dbserver-0",
            &[("app.kubernetes.io/instance", "users-dbserver")],
        ),
        pod(
            "shop",
            "user-service-1",
            &[("silo.dev/service", "user-service")],
        ),
        pod(
            "shop",
            "booking-service-1",
            &[("silo.dev/service", "booking-service")],
        ),
        pod("silo-system", "silo-operator-1", &[]),
        pod("other", "intruder", &[]),
    ]
}

fn cluster(policies: &[NetworkPolicy], pods: &[Pod]) -> Cluster {
    let namespaces = [
        namespace("shop"),
        namespace("silo-system"),
        namespace("other"),
    ];
    Cluster::new(&namespaces, pods, policies)
}

fn owner() -> AllowedClient {
    AllowedClient {
        namespace: "shop".into(),
        owner: "user-service".into(),
    }
}

fn assess_with(
    cluster: &Cluster,
    location: &DatabaseLocation,
    verified: Option<bool>,
) -> Assessment {
    let owner = owner();
    let expected = Expected {
        owner: &owner,
        operator_namespace: "silo-system",
        access_verified: verified,
    };
    assess(cluster, location, &expected)
}

#[test]
fn a_fenced_dedicated_server_is_reached_only_by_its_owner_and_the_operator() {
    let verdict = assess_with(
        &cluster(&[fence()], &pods()),
        &DatabaseLocation::Pods(server()),
        None,
    );
    assert!(verdict.isolated, "{verdict:?}");
    assert_eq!(verdict.reason, reasons::ONLY_OWNER_REACHES);
}

#[test]
fn a_hand_written_allow_all_policy_opens_it_and_is_named() {
    let verdict = assess_with(
        &cluster(&[fence(), allow_all()], &pods()),
        &DatabaseLocation::Pods(server()),
        Some(true),
    );
    assert!(!verdict.isolated);
    assert_eq!(verdict.reason, reasons::OPENED_BY_POLICY);
    assert!(
        verdict.message.contains("shop/allow-everything"),
        "{}",
        verdict.message
    );
    let sources: Vec<&str> = verdict.foreign.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(sources, ["other/intruder", "shop/booking-service-1"]);
}

#[test]
fn a_server_no_policy_selects_is_reached_by_everyone() {
    let verdict = assess_with(
        &cluster(&[], &pods()),
        &DatabaseLocation::Pods(server()),
        None,
    );
    assert!(!verdict.isolated);
    assert_eq!(verdict.reason, reasons::NOT_FENCED);
}

#[test]
fn host_network_pods_are_node_traffic_and_not_counted() {
    let mut all = pods();
    let mut host: Pod = pod("kube-system", "kube-proxy", &[]);
    if let Some(spec) = host.spec.as_mut() {
        spec.host_network = Some(true);
    }
    all.push(host);
    let verdict = assess_with(
        &cluster(&[fence()], &all),
        &DatabaseLocation::Pods(server()),
        None,
    );
    assert!(verdict.isolated, "{verdict:?}");
}

#[test]
fn before_the_server_pod_exists_a_pod_with_its_labels_stands_in() {
    let without_server: Vec<Pod> = pods().into_iter().skip(1).collect();
    let fenced = assess_with(
        &cluster(&[fence()], &without_server),
        &DatabaseLocation::Pods(server()),
        None,
    );
    assert!(fenced.isolated);
    let opened = assess_with(
        &cluster(&[fence(), allow_all()], &without_server),
        &DatabaseLocation::Pods(server()),
        None,
    );
    assert_eq!(opened.foreign[0].target, "shop/users-dbserver-0");
}

#[test]
fn a_shared_server_reports_the_databases_privileges_unless_a_stranger_reaches_it() {
    let mut shared = server();
    shared.shared_with = Some(vec![
        owner(),
        AllowedClient {
            namespace: "shop".into(),
            owner: "booking-service".into(),
        },
    ]);
    let location = DatabaseLocation::Pods(shared);
    let open_to_owners = policy(json!({
        "metadata": { "name": "users-dbserver", "namespace": "shop" },
        "spec": {
            "podSelector": { "matchLabels": { "app.kubernetes.io/instance": "users-dbserver" } },
            "ingress": [{ "from": [{ "podSelector": { "matchExpressions": [
                { "key": "silo.dev/service", "operator": "Exists" } ] } }] }],
        },
    }));
    let verified = assess_with(
        &cluster(std::slice::from_ref(&open_to_owners), &pods()),
        &location,
        Some(true),
    );
    assert!(verified.isolated);
    assert_eq!(verified.reason, reasons::SHARED_SERVER);
    let unverified = assess_with(&cluster(&[open_to_owners], &pods()), &location, Some(false));
    assert!(!unverified.isolated);
    let stranger = assess_with(
        &cluster(&[fence(), allow_all()], &pods()),
        &location,
        Some(true),
    );
    assert_eq!(stranger.reason, reasons::OPENED_BY_POLICY);
    assert_eq!(stranger.foreign.len(), 1, "{stranger:?}");
}

#[test]
fn an_external_server_has_database_level_isolation_only() {
    let location = DatabaseLocation::External {
        host: "pg.example.com".into(),
        port: 5432,
    };
    let verdict = assess_with(&cluster(&[], &pods()), &location, Some(true));
    assert!(verdict.isolated);
    assert_eq!(verdict.reason, reasons::DATABASE_LEVEL_ONLY);
    assert!(!assess_with(&cluster(&[], &pods()), &location, None).isolated);
}

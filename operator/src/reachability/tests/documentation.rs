//! The examples of the Kubernetes documentation's "Network Policies" page.

use serde_json::json;

use super::*;

/// The page's `test-network-policy`, verbatim.
fn test_network_policy() -> NetworkPolicy {
    policy(json!({
        "metadata": {"name": "test-network-policy", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                    {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                    {"podSelector": {"matchLabels": {"role": "frontend"}}},
                ],
                "ports": [{"protocol": "TCP", "port": 6379}],
            }],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 5978}],
            }],
        },
    }))
}

fn documentation_cluster() -> Cluster {
    cluster(
        &[
            namespace("default", &[]),
            namespace("myproject", &[("project", "myproject")]),
            namespace("other", &[]),
        ],
        &[
            pod("default", "db")
                .labels(&[("role", "db")])
                .ip("10.1.0.10"),
            pod("default", "frontend")
                .labels(&[("role", "frontend")])
                .ip("10.1.0.11"),
            pod("default", "backend")
                .labels(&[("role", "backend")])
                .ip("10.1.0.12"),
            pod("myproject", "client").ip("10.1.1.10"),
            pod("other", "frontend")
                .labels(&[("role", "frontend")])
                .ip("10.1.2.10"),
            pod("other", "in-range").ip("172.17.0.5"),
            pod("other", "excepted").ip("172.17.1.5"),
            pod("other", "egress-target").ip("10.0.0.7"),
            pod("other", "beyond-egress").ip("10.0.1.7"),
        ],
        &[test_network_policy()],
    )
}

#[test]
fn test_network_policy_admits_frontend_pods_of_its_namespace_on_6379() {
    let cluster = documentation_cluster();
    assert!(reaches(&cluster, "default/frontend", "default/db", 6379));
    assert!(!reaches(&cluster, "default/backend", "default/db", 6379));
    assert!(!reaches(&cluster, "default/frontend", "default/db", 6380));
    assert!(!reaches_over(
        &cluster,
        "default/frontend",
        "default/db",
        6379,
        Protocol::Udp
    ));
}

#[test]
fn test_network_policy_pod_selector_never_reaches_into_other_namespaces() {
    let cluster = documentation_cluster();
    assert!(!reaches(&cluster, "other/frontend", "default/db", 6379));
}

#[test]
fn test_network_policy_admits_every_pod_of_a_myproject_namespace() {
    let cluster = documentation_cluster();
    assert!(reaches(&cluster, "myproject/client", "default/db", 6379));
}

#[test]
fn test_network_policy_ip_block_except_carves_a_hole_in_the_cidr() {
    let cluster = documentation_cluster();
    assert!(reaches(&cluster, "other/in-range", "default/db", 6379));
    assert!(!reaches(&cluster, "other/excepted", "default/db", 6379));
    let db = cluster.pod("default", "db").unwrap();
    let outside = "172.17.2.1".parse().unwrap();
    assert!(
        cluster
            .ingress_from_address(db, outside, 6379, Protocol::Tcp)
            .is_allowed()
    );
    let excepted = "172.17.1.1".parse().unwrap();
    assert!(
        !cluster
            .ingress_from_address(db, excepted, 6379, Protocol::Tcp)
            .is_allowed()
    );
}

#[test]
fn test_network_policy_egress_reaches_only_the_cidr_on_5978() {
    let cluster = documentation_cluster();
    assert!(reaches(&cluster, "default/db", "other/egress-target", 5978));
    assert!(!reaches(
        &cluster,
        "default/db",
        "other/egress-target",
        5979
    ));
    assert!(!reaches(
        &cluster,
        "default/db",
        "other/beyond-egress",
        5978
    ));
    assert!(!reaches(&cluster, "default/db", "default/frontend", 6379));
    assert_eq!(
        explain(&cluster, "default/db", "default/frontend", 6379).denied_directions(),
        [Direction::Egress]
    );
}

#[test]
fn test_network_policy_leaves_unselected_pods_open() {
    let cluster = documentation_cluster();
    assert!(reaches(&cluster, "other/frontend", "default/backend", 1234));
    assert!(reaches(&cluster, "default/backend", "other/frontend", 1234));
}

/// Clients in namespaces labelled `user=alice` and `user=bob`, and in the policy's namespace.
fn alice_and_bob(peers: serde_json::Value) -> Cluster {
    cluster(
        &[
            namespace("web", &[]),
            namespace("alice", &[("user", "alice")]),
            namespace("bob", &[("user", "bob")]),
        ],
        &[
            pod("web", "server").labels(&[("app", "server")]),
            pod("web", "client").labels(&[("role", "client")]),
            pod("web", "other"),
            pod("alice", "client").labels(&[("role", "client")]),
            pod("alice", "other"),
            pod("bob", "client").labels(&[("role", "client")]),
        ],
        &[policy(json!({
            "metadata": {"name": "clients", "namespace": "web"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "server"}},
                "ingress": [{"from": peers}],
            },
        }))],
    )
}

#[test]
fn a_peer_with_both_selectors_requires_both() {
    let cluster = alice_and_bob(json!([{
        "namespaceSelector": {"matchLabels": {"user": "alice"}},
        "podSelector": {"matchLabels": {"role": "client"}},
    }]));
    assert!(reaches(&cluster, "alice/client", "web/server", 80));
    assert!(!reaches(&cluster, "alice/other", "web/server", 80));
    assert!(!reaches(&cluster, "web/client", "web/server", 80));
    assert!(!reaches(&cluster, "bob/client", "web/server", 80));
}

#[test]
fn two_peers_with_one_selector_each_admit_either() {
    let cluster = alice_and_bob(json!([
        {"namespaceSelector": {"matchLabels": {"user": "alice"}}},
        {"podSelector": {"matchLabels": {"role": "client"}}},
    ]));
    assert!(reaches(&cluster, "alice/client", "web/server", 80));
    assert!(reaches(&cluster, "alice/other", "web/server", 80));
    assert!(reaches(&cluster, "web/client", "web/server", 80));
    assert!(!reaches(&cluster, "bob/client", "web/server", 80));
    assert!(!reaches(&cluster, "web/other", "web/server", 80));
}

/// Two pods in `default` and one in `elsewhere`, under the given policies in `default`.
fn default_namespace_with(policies: &[serde_json::Value]) -> Cluster {
    let policies: Vec<NetworkPolicy> = policies
        .iter()
        .map(|spec| {
            let name = spec["name"].as_str().unwrap();
            policy(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec["spec"],
            }))
        })
        .collect();
    cluster(
        &[namespace("default", &[]), namespace("elsewhere", &[])],
        &[
            pod("default", "a").ip("10.1.0.1"),
            pod("default", "b").ip("10.1.0.2"),
            pod("elsewhere", "c").ip("10.1.9.1"),
        ],
        &policies,
    )
}

fn default_deny_ingress() -> serde_json::Value {
    json!({"name": "default-deny-ingress",
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
}

fn default_deny_egress() -> serde_json::Value {
    json!({"name": "default-deny-egress",
           "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})
}

#[test]
fn default_deny_ingress_isolates_ingress_of_every_pod_in_its_namespace_only() {
    let cluster = default_namespace_with(&[default_deny_ingress()]);
    assert!(!reaches(&cluster, "default/a", "default/b", 80));
    assert!(!reaches(&cluster, "elsewhere/c", "default/a", 80));
    assert!(reaches(&cluster, "default/a", "elsewhere/c", 80));
    assert!(reaches(&cluster, "elsewhere/c", "elsewhere/c", 80));
}

#[test]
fn default_allow_all_ingress_reopens_what_a_deny_isolates() {
    let allow_all = json!({"name": "allow-all-ingress", "spec": {
        "podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"],
    }});
    let cluster = default_namespace_with(&[default_deny_ingress(), allow_all]);
    assert!(reaches(&cluster, "elsewhere/c", "default/a", 80));
    assert!(reaches_over(
        &cluster,
        "default/b",
        "default/a",
        53,
        Protocol::Udp
    ));
}

#[test]
fn default_deny_egress_blocks_outgoing_but_not_incoming_traffic() {
    let cluster = default_namespace_with(&[default_deny_egress()]);
    assert!(!reaches(&cluster, "default/a", "elsewhere/c", 80));
    assert!(!reaches(&cluster, "default/a", "default/b", 80));
    assert!(reaches(&cluster, "elsewhere/c", "default/a", 80));
}

#[test]
fn default_allow_all_egress_reopens_what_a_deny_isolates() {
    let allow_all = json!({"name": "allow-all-egress", "spec": {
        "podSelector": {}, "egress": [{}], "policyTypes": ["Egress"],
    }});
    let cluster = default_namespace_with(&[default_deny_egress(), allow_all]);
    assert!(reaches(&cluster, "default/a", "elsewhere/c", 80));
    let a = cluster.pod("default", "a").unwrap();
    let world = "203.0.113.7".parse().unwrap();
    assert!(
        cluster
            .egress_to_address(a, world, 443, Protocol::Tcp)
            .is_allowed()
    );
}

#[test]
fn default_deny_all_blocks_both_directions() {
    let deny_all = json!({"name": "default-deny-all", "spec": {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
    }});
    let cluster = default_namespace_with(&[deny_all]);
    assert!(!reaches(&cluster, "default/a", "elsewhere/c", 80));
    assert!(!reaches(&cluster, "elsewhere/c", "default/a", 80));
    assert_eq!(
        explain(&cluster, "default/a", "default/b", 80).denied_directions(),
        [Direction::Egress, Direction::Ingress]
    );
}

#[test]
fn end_port_admits_the_whole_range_and_nothing_beyond() {
    let multi_port_egress = policy(json!({
        "metadata": {"name": "multi-port-egress", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}],
            }],
        },
    }));
    let cluster = cluster(
        &[namespace("default", &[])],
        &[
            pod("default", "db")
                .labels(&[("role", "db")])
                .ip("10.1.0.1"),
            pod("default", "target").ip("10.0.0.9"),
        ],
        &[multi_port_egress],
    );
    for (port, allowed) in [
        (31999, false),
        (32000, true),
        (32400, true),
        (32768, true),
        (32769, false),
    ] {
        assert_eq!(
            reaches(&cluster, "default/db", "default/target", port),
            allowed,
            "port {port}"
        );
    }
    assert!(!reaches_over(
        &cluster,
        "default/db",
        "default/target",
        32000,
        Protocol::Udp
    ));
}

//! The tricky corners: `{}` versus absent, empty lists, named ports, namespaces, policy types.

use serde_json::json;

use super::*;

/// Pods `shop/server` (labelled `app=server`, port `http` 8080), `shop/client`,
/// `other/client`, under one policy in `shop` with the given spec.
fn shop_with(spec: serde_json::Value) -> Cluster {
    cluster(
        &[namespace("shop", &[]), namespace("other", &[])],
        &[
            pod("shop", "server")
                .labels(&[("app", "server")])
                .ip("10.1.0.1")
                .port("http", 8080),
            pod("shop", "client")
                .labels(&[("app", "client")])
                .ip("10.1.0.2"),
            pod("other", "client")
                .labels(&[("app", "client")])
                .ip("10.1.9.2"),
        ],
        &[policy(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )],
    )
}

#[test]
fn an_absent_pod_selector_selects_every_pod_like_an_empty_one() {
    for spec in [
        json!({"policyTypes": ["Ingress"]}),
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ] {
        let cluster = shop_with(spec);
        assert!(!reaches(&cluster, "other/client", "shop/server", 8080));
        assert!(!reaches(&cluster, "other/client", "shop/client", 8080));
    }
}

#[test]
fn an_empty_pod_selector_peer_means_every_pod_of_the_policys_namespace() {
    let cluster = shop_with(json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"podSelector": {}}]}],
    }));
    assert!(reaches(&cluster, "shop/client", "shop/server", 8080));
    assert!(!reaches(&cluster, "other/client", "shop/server", 8080));
}

#[test]
fn an_empty_namespace_selector_peer_means_every_pod_of_every_namespace() {
    let cluster = shop_with(json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"namespaceSelector": {}}]}],
    }));
    assert!(reaches(&cluster, "shop/client", "shop/server", 8080));
    assert!(reaches(&cluster, "other/client", "shop/server", 8080));
    let server = cluster.pod("shop", "server").unwrap();
    let outsider = "203.0.113.1".parse().unwrap();
    assert!(
        !cluster
            .ingress_from_address(server, outsider, 8080, Protocol::Tcp)
            .is_allowed()
    );
}

#[test]
fn an_empty_or_absent_from_admits_every_source() {
    for rule in [
        json!({"from": []}),
        json!({}),
        json!({"ports": [{"port": 8080}]}),
    ] {
        let cluster = shop_with(json!({
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [rule],
        }));
        assert!(
            reaches(&cluster, "other/client", "shop/server", 8080),
            "{rule}"
        );
        let server = cluster.pod("shop", "server").unwrap();
        let outsider = "203.0.113.1".parse().unwrap();
        assert!(
            cluster
                .ingress_from_address(server, outsider, 8080, Protocol::Tcp)
                .is_allowed()
        );
    }
}

#[test]
fn one_empty_ingress_rule_admits_all_but_an_empty_ingress_list_admits_nothing() {
    let allow_all = shop_with(json!({"podSelector": {}, "ingress": [{}]}));
    assert!(reaches(&allow_all, "other/client", "shop/server", 8080));
    assert!(reaches_over(
        &allow_all,
        "other/client",
        "shop/server",
        53,
        Protocol::Sctp
    ));
    let deny_all = shop_with(json!({"podSelector": {}, "ingress": []}));
    assert!(!reaches(&deny_all, "other/client", "shop/server", 8080));
    assert!(!reaches(&deny_all, "shop/client", "shop/server", 8080));
}

#[test]
fn a_ports_entry_without_a_port_admits_every_port_of_its_protocol_tcp_by_default() {
    let udp_only =
        shop_with(json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}));
    assert!(reaches_over(
        &udp_only,
        "other/client",
        "shop/server",
        53,
        Protocol::Udp
    ));
    assert!(!reaches(&udp_only, "other/client", "shop/server", 53));
    let empty_entry = shop_with(json!({"podSelector": {}, "ingress": [{"ports": [{}]}]}));
    assert!(reaches(&empty_entry, "other/client", "shop/server", 9999));
    assert!(!reaches_over(
        &empty_entry,
        "other/client",
        "shop/server",
        9999,
        Protocol::Udp
    ));
}

#[test]
fn named_ports_resolve_to_different_numbers_per_pod() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "old")
                .labels(&[("app", "api")])
                .port("http", 8080),
            pod("shop", "new")
                .labels(&[("app", "api")])
                .port("http", 9090),
            pod("shop", "bare").labels(&[("app", "api")]),
            pod("shop", "client"),
        ],
        &[policy(json!({
            "metadata": {"name": "http-only", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "api"}},
                     "ingress": [{"ports": [{"port": "http"}]}]},
        }))],
    );
    assert!(reaches(&cluster, "shop/client", "shop/old", 8080));
    assert!(!reaches(&cluster, "shop/client", "shop/old", 9090));
    assert!(reaches(&cluster, "shop/client", "shop/new", 9090));
    assert!(!reaches(&cluster, "shop/client", "shop/new", 8080));
    assert!(!reaches(&cluster, "shop/client", "shop/bare", 8080));
}

#[test]
fn a_named_port_must_match_the_rules_protocol() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "dns").port_over("dns", 53, "UDP"),
            pod("shop", "client"),
        ],
        &[policy(json!({
            "metadata": {"name": "dns-tcp", "namespace": "shop"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "dns", "protocol": "TCP"}]}]},
        }))],
    );
    assert!(!reaches(&cluster, "shop/client", "shop/dns", 53));
    assert!(!reaches_over(
        &cluster,
        "shop/client",
        "shop/dns",
        53,
        Protocol::Udp
    ));
}

#[test]
fn an_egress_named_port_resolves_against_the_destination_pod() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "client").labels(&[("app", "client")]),
            pod("shop", "old").port("http", 8080),
            pod("shop", "new").port("http", 9090),
        ],
        &[policy(json!({
            "metadata": {"name": "egress-http", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "client"}},
                     "policyTypes": ["Egress"],
                     "egress": [{"ports": [{"port": "http"}]}]},
        }))],
    );
    assert!(reaches(&cluster, "shop/client", "shop/old", 8080));
    assert!(!reaches(&cluster, "shop/client", "shop/old", 9090));
    assert!(reaches(&cluster, "shop/client", "shop/new", 9090));
    let client = cluster.pod("shop", "client").unwrap();
    let outside = "203.0.113.1".parse().unwrap();
    assert!(
        !cluster
            .egress_to_address(client, outside, 8080, Protocol::Tcp)
            .is_allowed()
    );
}

#[test]
fn a_policy_never_selects_pods_outside_its_namespace() {
    let cluster = cluster(
        &[namespace("shop", &[]), namespace("other", &[])],
        &[pod("shop", "a"), pod("other", "b"), pod("other", "c")],
        &[policy(json!({
            "metadata": {"name": "deny-all", "namespace": "shop"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }))],
    );
    assert!(reaches(&cluster, "other/b", "other/c", 80));
    assert_eq!(
        explain(&cluster, "other/b", "other/c", 80).ingress,
        DirectionVerdict::NotIsolated
    );
    assert!(!reaches(&cluster, "other/b", "shop/a", 80));
}

#[test]
fn an_egress_only_policy_leaves_ingress_open() {
    let cluster = shop_with(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
    assert!(reaches(&cluster, "other/client", "shop/server", 8080));
    assert!(!reaches(&cluster, "shop/server", "other/client", 8080));
    assert_eq!(
        explain(&cluster, "other/client", "shop/server", 8080).ingress,
        DirectionVerdict::NotIsolated
    );
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
    let cluster = shop_with(json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
    }));
    assert!(!reaches(&cluster, "shop/client", "shop/server", 8080));
    assert!(reaches(&cluster, "shop/server", "shop/client", 8080));
    assert!(!reaches(&cluster, "shop/server", "other/client", 8080));
}

#[test]
fn an_empty_egress_list_without_policy_types_isolates_ingress_only() {
    let cluster = shop_with(json!({"podSelector": {}, "egress": []}));
    assert!(reaches(&cluster, "shop/server", "other/client", 8080));
    assert!(!reaches(&cluster, "other/client", "shop/server", 8080));
}

#[test]
fn policies_are_additive() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[pod("shop", "server").labels(&[("app", "server")]), pod("shop", "a").labels(&[("app", "a")]),
          pod("shop", "b").labels(&[("app", "b")]), pod("shop", "c")],
        &["a", "b"].map(|client| policy(json!({
            "metadata": {"name": format!("from-{client}"), "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": client}}}]}]},
        }))),
    );
    assert!(reaches(&cluster, "shop/a", "shop/server", 80));
    assert!(reaches(&cluster, "shop/b", "shop/server", 80));
    assert!(!reaches(&cluster, "shop/c", "shop/server", 80));
}

#[test]
fn a_connection_needs_both_the_sources_egress_and_the_targets_ingress() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "a").labels(&[("app", "a")]),
            pod("shop", "b").labels(&[("app", "b")]),
        ],
        &[
            policy(
                json!({"metadata": {"name": "b-admits-a", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}}),
            ),
            policy(
                json!({"metadata": {"name": "a-sends-nothing", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"]}}),
            ),
        ],
    );
    let verdict = explain(&cluster, "shop/a", "shop/b", 80);
    assert!(!verdict.is_allowed());
    assert_eq!(verdict.denied_directions(), [Direction::Egress]);
    assert!(verdict.ingress.is_allowed());
}

#[test]
fn a_pod_can_always_reach_itself() {
    let cluster = shop_with(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
    let verdict = explain(&cluster, "shop/server", "shop/server", 8080);
    assert!(verdict.is_allowed());
    let exempt = DirectionVerdict::Exempt {
        reason: Exemption::SelfConnection,
    };
    assert_eq!((verdict.egress, verdict.ingress), (exempt.clone(), exempt));
}

#[test]
fn ipv6_and_dual_stack_pods_match_ip_blocks_by_either_address() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "server")
                .labels(&[("app", "server")])
                .ip("fd00:1::1"),
            pod("shop", "v6").ip("fd00:2::7"),
            pod("shop", "excepted").ip("fd00:2:0:1::7"),
            pod("shop", "dual").ip("10.9.0.1").ip("fd00:2::8"),
            pod("shop", "v4").ip("10.9.0.2"),
        ],
        &[policy(
            json!({"metadata": {"name": "v6-clients", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                     "ingress": [{"from": [{"ipBlock": {"cidr": "fd00:2::/48", "except": ["fd00:2:0:1::/64"]}}]}]}}),
        )],
    );
    assert!(reaches(&cluster, "shop/v6", "shop/server", 80));
    assert!(!reaches(&cluster, "shop/excepted", "shop/server", 80));
    assert!(reaches(&cluster, "shop/dual", "shop/server", 80));
    assert!(!reaches(&cluster, "shop/v4", "shop/server", 80));
}

#[test]
fn a_pod_without_an_address_is_matched_by_selectors_but_never_by_ip_blocks() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "server").labels(&[("app", "server")]),
            pod("shop", "pending").labels(&[("app", "client")]),
        ],
        &[policy(
            json!({"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                     "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
                                 {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 81}]}]}}),
        )],
    );
    assert!(!reaches(&cluster, "shop/pending", "shop/server", 80));
    assert!(reaches(&cluster, "shop/pending", "shop/server", 81));
}

#[test]
fn host_network_pods_are_never_isolated_nor_matched_by_selectors() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "server")
                .labels(&[("app", "server")])
                .ip("10.1.0.1")
                .on_node("node-a"),
            pod("shop", "agent")
                .labels(&[("app", "client")])
                .ip("192.168.0.2")
                .host_network()
                .on_node("node-b"),
            pod("shop", "local-agent")
                .ip("192.168.0.1")
                .host_network()
                .on_node("node-a"),
        ],
        &[policy(
            json!({"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}}),
        )],
    );
    assert!(!reaches(&cluster, "shop/agent", "shop/server", 80));
    let from_node = explain(&cluster, "shop/local-agent", "shop/server", 80);
    assert_eq!(
        from_node.ingress,
        DirectionVerdict::Exempt {
            reason: Exemption::FromOwnNode
        }
    );
    assert!(from_node.is_allowed());
    let to_host = explain(&cluster, "shop/agent", "shop/local-agent", 80);
    assert!(to_host.ingress.is_allowed());
    assert_eq!(
        to_host.egress,
        DirectionVerdict::Exempt {
            reason: Exemption::HostNetwork
        }
    );
    assert!(!reaches(&cluster, "shop/server", "shop/agent", 80));
}

#[test]
fn a_namespace_missing_from_the_inputs_still_carries_its_name_label() {
    let cluster = cluster(
        &[],
        &[
            pod("shop", "server").labels(&[("app", "server")]),
            pod("ops", "admin"),
            pod("dev", "admin"),
        ],
        &[policy(
            json!({"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"podSelector": {},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}]}}),
        )],
    );
    assert!(reaches(&cluster, "ops/admin", "shop/server", 80));
    assert!(!reaches(&cluster, "dev/admin", "shop/server", 80));
}

#[test]
fn namespace_labels_are_taken_as_they_are_in_the_cluster() {
    let unlabelled: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "ops"}})).unwrap();
    let cluster = cluster(
        &[unlabelled],
        &[pod("shop", "server"), pod("ops", "admin")],
        &[policy(
            json!({"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"podSelector": {},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}]}}),
        )],
    );
    assert!(!reaches(&cluster, "ops/admin", "shop/server", 80));
}

#[test]
fn finished_pods_are_left_out_of_the_cluster() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "done").phase("Succeeded"),
            pod("shop", "crashed").phase("Failed"),
            pod("shop", "running"),
        ],
        &[],
    );
    let keys: Vec<String> = cluster.pods().iter().map(PodEndpoint::key).collect();
    assert_eq!(keys, ["shop/running"]);
}

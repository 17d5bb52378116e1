//! Cases of the Kubernetes project's own NetworkPolicy conformance suite
//! (`test/e2e/network/netpol`): namespaces x, y, z with pods a, b, c each, every pod serving
//! ports 80 and 81 over TCP and UDP with named ports `serve-<port>-<protocol>`, and the
//! expected truth table written as a rule over `<namespace>/<pod>` pairs. The diagonal is
//! expected open (the suite's `AllowLoopback`).

use serde_json::json;

use super::super::Scope;
use super::*;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn model(policies: &[NetworkPolicy]) -> Cluster {
    let namespaces: Vec<Namespace> = NAMESPACES
        .iter()
        .map(|name| namespace(name, &[("ns", name)]))
        .collect();
    let mut pods = Vec::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for (p, name) in PODS.iter().enumerate() {
            pods.push(
                pod(ns, name)
                    .labels(&[("pod", name)])
                    .ip(&format!("10.0.{}.{}", n + 1, p + 1))
                    .port("serve-80-tcp", 80)
                    .port("serve-81-tcp", 81)
                    .port_over("serve-80-udp", 80, "UDP")
                    .port_over("serve-81-udp", 81, "UDP"),
            );
        }
    }
    cluster(&namespaces, &pods, policies)
}

/// A policy in namespace x selecting `pod_selector` with the given spec fields.
fn in_x(name: &str, pod_selector: serde_json::Value, spec: serde_json::Value) -> NetworkPolicy {
    let mut spec = spec;
    spec["podSelector"] = pod_selector;
    policy(json!({"metadata": {"name": name, "namespace": "x"}, "spec": spec}))
}

fn pod_a() -> serde_json::Value {
    json!({"matchLabels": {"pod": "a"}})
}

/// Compares the evaluator's matrix with `expected(from, to)` on every pair.
fn assert_truth_table(
    policies: &[NetworkPolicy],
    port: u16,
    protocol: Protocol,
    expected: impl Fn(&str, &str) -> bool,
) {
    let matrix = model(policies).matrix(&Scope::AllNamespaces, port, protocol);
    let mut wrong = Vec::new();
    for (from, row) in &matrix.matrix {
        for (to, allowed) in row {
            let want = from == to || expected(from, to);
            if *allowed != want {
                wrong.push(format!("{from} -> {to}: got {allowed}, want {want}"));
            }
        }
    }
    assert_eq!(matrix.matrix.len(), 9);
    assert!(wrong.is_empty(), "{port}/{protocol}:\n{}", wrong.join("\n"));
}

fn ns(key: &str) -> &str {
    key.split_once('/').map_or(key, |(namespace, _)| namespace)
}

#[test]
fn upstream_default_deny_ingress() {
    let deny = in_x(
        "deny-ingress",
        json!({}),
        json!({"policyTypes": ["Ingress"]}),
    );
    assert_truth_table(&[deny], 80, Protocol::Tcp, |_, to| ns(to) != "x");
}

#[test]
fn upstream_default_deny_all() {
    let deny = in_x(
        "deny-all",
        json!({}),
        json!({"policyTypes": ["Ingress", "Egress"]}),
    );
    assert_truth_table(&[deny], 81, Protocol::Tcp, |from, to| {
        ns(from) != "x" && ns(to) != "x"
    });
}

#[test]
fn upstream_allow_all_ingress() {
    let allow = in_x("allow-all", json!({}), json!({"ingress": [{}]}));
    assert_truth_table(&[allow], 80, Protocol::Udp, |_, _| true);
}

#[test]
fn upstream_ingress_from_pod_selector_in_the_server_namespace() {
    let policy = in_x(
        "x-a-allows-x-b",
        pod_a(),
        json!({"ingress": [{"from": [{"podSelector": {"matchExpressions": [
            {"key": "pod", "operator": "In", "values": ["b"]}]}}]}]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        to != "x/a" || from == "x/b"
    });
}

#[test]
fn upstream_ingress_only_from_another_namespace() {
    let policy = in_x(
        "allow-from-y",
        pod_a(),
        json!({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        to != "x/a" || ns(from) == "y"
    });
}

#[test]
fn upstream_pod_selector_or_namespace_selector() {
    let policy = in_x(
        "or",
        pod_a(),
        json!({"ingress": [{"from": [
            {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}},
            {"podSelector": {"matchLabels": {"pod": "b"}}},
        ]}]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        to != "x/a" || ns(from) != "x" || from == "x/b"
    });
}

#[test]
fn upstream_pod_selector_and_namespace_selector() {
    let policy = in_x(
        "and",
        pod_a(),
        json!({"ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]},
            "podSelector": {"matchLabels": {"pod": "b"}},
        }]}]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        to != "x/a" || from == "y/b" || from == "z/b"
    });
}

#[test]
fn upstream_ingress_on_one_numeric_port() {
    let policy = in_x(
        "allow-y-on-81",
        pod_a(),
        json!({"ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
            "ports": [{"port": 81, "protocol": "TCP"}],
        }]}),
    );
    assert_truth_table(
        std::slice::from_ref(&policy),
        81,
        Protocol::Tcp,
        |from, to| to != "x/a" || ns(from) == "y",
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |_, to| to != "x/a");
}

#[test]
fn upstream_ingress_on_one_named_port() {
    let policy = in_x(
        "allow-named-81",
        json!({}),
        json!({"ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    );
    assert_truth_table(std::slice::from_ref(&policy), 81, Protocol::Tcp, |_, _| {
        true
    });
    assert_truth_table(std::slice::from_ref(&policy), 80, Protocol::Tcp, |_, to| {
        ns(to) != "x"
    });
    assert_truth_table(&[policy], 81, Protocol::Udp, |_, to| ns(to) != "x");
}

#[test]
fn upstream_ingress_on_any_port_of_one_protocol() {
    let policy = in_x(
        "tcp-only",
        json!({}),
        json!({"ingress": [{"ports": [{"protocol": "TCP"}]}]}),
    );
    assert_truth_table(std::slice::from_ref(&policy), 80, Protocol::Tcp, |_, _| {
        true
    });
    assert_truth_table(&[policy], 80, Protocol::Udp, |_, to| ns(to) != "x");
}

#[test]
fn upstream_egress_to_a_pod_in_another_namespace() {
    let policy = in_x(
        "x-a-to-y-a",
        pod_a(),
        json!({"policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]},
            {"ports": [{"port": 53, "protocol": "UDP"}]},
        ]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        from != "x/a" || to == "y/a"
    });
}

#[test]
fn upstream_egress_allow_all_takes_precedence() {
    let only_80 = in_x(
        "x-a-egress-80",
        pod_a(),
        json!({"policyTypes": ["Egress"], "egress": [{"ports": [{"port": 80}]}]}),
    );
    let allow_all = in_x(
        "allow-all-egress",
        json!({}),
        json!({"policyTypes": ["Egress"], "egress": [{}]}),
    );
    assert_truth_table(
        std::slice::from_ref(&only_80),
        81,
        Protocol::Tcp,
        |from, _| from != "x/a",
    );
    assert_truth_table(&[only_80, allow_all], 81, Protocol::Tcp, |_, _| true);
}

#[test]
fn upstream_egress_to_a_cidr_with_an_except_for_one_server() {
    let policy = in_x(
        "x-a-to-cidr-but-y-b",
        pod_a(),
        json!({"policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.2/32"]}}]},
        ]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        from != "x/a" || to != "y/b"
    });
}

#[test]
fn upstream_ingress_from_a_pod_cidr() {
    let policy = in_x(
        "from-z-cidr",
        pod_a(),
        json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.3.0/24"}}]}]}),
    );
    assert_truth_table(&[policy], 80, Protocol::Tcp, |from, to| {
        to != "x/a" || ns(from) == "z"
    });
}

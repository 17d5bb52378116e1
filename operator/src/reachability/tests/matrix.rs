//! The matrix format of `silo-operator access pods --output json`.

use std::collections::BTreeSet;

use serde_json::json;

use super::super::{Matrix, Scope};
use super::*;

fn x_admits_only_its_own_pods() -> Cluster {
    cluster(
        &[namespace("x", &[]), namespace("y", &[])],
        &[pod("x", "a"), pod("x", "b"), pod("y", "c")],
        &[policy(
            json!({"metadata": {"name": "b-deny", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {}}]}]}}),
        )],
    )
}

#[test]
fn the_matrix_serializes_in_the_documented_format() {
    let cluster = x_admits_only_its_own_pods();
    let matrix = cluster.matrix(&Scope::AllNamespaces, 80, Protocol::Tcp);
    assert_eq!(
        serde_json::to_string(&matrix).unwrap(),
        concat!(
            r#"{"port":80,"protocol":"TCP","matrix":{"#,
            r#""x/a":{"x/a":true,"x/b":true,"y/c":true},"#,
            r#""x/b":{"x/a":true,"x/b":true,"y/c":true},"#,
            r#""y/c":{"x/a":false,"x/b":false,"y/c":true}}}"#,
        )
    );
}

#[test]
fn a_matrix_covers_every_pod_of_the_selected_namespaces_including_itself() {
    let cluster = x_admits_only_its_own_pods();
    let only_x = Scope::Namespaces(BTreeSet::from(["x".to_string()]));
    let matrix = cluster.matrix(&only_x, 443, Protocol::Udp);
    assert_eq!(matrix.port, 443);
    assert_eq!(matrix.protocol, Protocol::Udp);
    let keys: Vec<&String> = matrix.matrix.keys().collect();
    assert_eq!(keys, ["x/a", "x/b"]);
    for row in matrix.matrix.values() {
        assert_eq!(row.keys().collect::<Vec<_>>(), keys);
    }
    assert_eq!(matrix.allowed("x/a", "x/a"), Some(true));
    assert_eq!(matrix.allowed("y/c", "x/a"), None);
}

#[test]
fn a_matrix_reads_back_from_its_json() {
    let cluster = x_admits_only_its_own_pods();
    let matrix = cluster.matrix(&Scope::AllNamespaces, 80, Protocol::Sctp);
    let text = serde_json::to_string(&matrix).unwrap();
    let parsed: Matrix = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, matrix);
}

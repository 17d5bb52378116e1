//! The dependency graph of the Services of one namespace, to refuse cycles.
//!
//! Only dependencies within the namespace are edges: a cycle that leaves the namespace is not
//! detected (the operator may not even see the other namespace).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::crd::Service;

/// Same-namespace dependencies of each Service of `namespace`, by name.
pub fn namespace_edges<'a>(
    namespace: &str,
    services: impl IntoIterator<Item = &'a Service>,
) -> BTreeMap<String, Vec<String>> {
    services
        .into_iter()
        .filter(|service| service.namespace().as_deref() == Some(namespace))
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .map(|service| {
            let local = service
                .spec
                .depends_on
                .iter()
                .filter(|d| d.namespace_or(namespace) == namespace)
                .map(|d| d.service.clone())
                .collect();
            (service.name_any(), local)
        })
        .collect()
}

/// The Services whose `dependsOn` names `namespace/name` (and are not being deleted).
pub fn callers_of<'a>(
    namespace: &str,
    name: &str,
    services: impl IntoIterator<Item = &'a Service>,
) -> Vec<&'a Service> {
    services
        .into_iter()
        .filter(|caller| caller.metadata.deletion_timestamp.is_none())
        .filter(|caller| {
            let own = caller.namespace().unwrap_or_default();
            caller
                .spec
                .depends_on
                .iter()
                .any(|d| d.service == name && d.namespace_or(&own) == namespace)
        })
        .collect()
}

/// A cycle through `start`, as the path `start → … → start`, if `edges` hold one.
pub fn cycle_through(start: &str, edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    let mut path = vec![start.to_string()];
    let mut visited = BTreeSet::new();
    if walk(start, start, edges, &mut path, &mut visited) {
        Some(path)
    } else {
        None
    }
}

/// Depth-first from `node`; on success `path` ends with `start` again. Every node is expanded
/// once: a node that did not lead back to `start` the first time will not the second.
fn walk(
    start: &str,
    node: &str,
    edges: &BTreeMap<String, Vec<String>>,
    path: &mut Vec<String>,
    visited: &mut BTreeSet<String>,
) -> bool {
    for next in edges.get(node).into_iter().flatten() {
        if next == start {
            path.push(next.clone());
            return true;
        }
        if !visited.insert(next.clone()) {
            continue;
        }
        path.push(next.clone());
        if walk(start, next, edges, path, visited) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(from, to)| (from.to_string(), to.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_cycle_is_reported_as_the_path_back_to_the_service() {
        let graph = edges(&[
            ("booking", &["user", "payment"]),
            ("payment", &["audit"]),
            ("audit", &["booking"]),
            ("user", &[]),
        ]);
        assert_eq!(
            cycle_through("booking", &graph).unwrap(),
            ["booking", "payment", "audit", "booking"]
        );
        assert_eq!(
            cycle_through("audit", &graph).unwrap(),
            ["audit", "booking", "payment", "audit"]
        );
        assert_eq!(cycle_through("user", &graph), None);
    }

    #[test]
    fn a_diamond_is_no_cycle_and_a_cycle_elsewhere_is_not_this_services() {
        let graph = edges(&[
            ("top", &["left", "right"]),
            ("left", &["bottom"]),
            ("right", &["bottom"]),
            ("bottom", &["x"]),
            ("x", &["y"]),
            ("y", &["x"]),
        ]);
        assert_eq!(cycle_through("top", &graph), None);
        assert!(cycle_through("x", &graph).is_some());
    }

    #[test]
    fn only_dependencies_within_the_namespace_are_edges() {
        let service = |name: &str, deps: &str| -> Service {
            serde_yaml::from_str(&format!(
                "apiVersion: silo.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
                 spec: {{image: x, dependsOn: {deps}}}\n"
            ))
            .unwrap()
        };
        let services = [
            service("a", "[{service: b}, {service: c, namespace: other}]"),
            service("b", "[{service: a, namespace: shop}]"),
        ];
        let graph = namespace_edges("shop", &services);
        assert_eq!(graph["a"], ["b"]);
        assert_eq!(cycle_through("a", &graph).unwrap(), ["a", "b", "a"]);
    }
}

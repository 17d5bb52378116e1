//! Peers of a rule (`from` / `to`): pod and namespace selectors, both (AND), and `ipBlock`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cidr::ip_block_contains;
use super::endpoints::PodEndpoint;
use super::selectors::selector_matches;

/// The label every namespace carries with its own name (set by the API server since 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The far end of a connection, seen from the pod whose policies are evaluated.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Remote<'a> {
    /// Another pod.
    Pod(&'a PodEndpoint),
    /// An address that is not a known pod (outside the cluster, a node, a Service VIP).
    Address(IpAddr),
}

impl<'a> Remote<'a> {
    /// The remote pod, if the far end is one.
    pub(crate) fn pod(&self) -> Option<&'a PodEndpoint> {
        match self {
            Self::Pod(pod) => Some(pod),
            Self::Address(_) => None,
        }
    }

    fn ips(&self) -> &[IpAddr] {
        match self {
            Self::Pod(pod) => &pod.ips,
            Self::Address(ip) => std::slice::from_ref(ip),
        }
    }
}

/// Namespace labels by namespace name, for `namespaceSelector`.
#[derive(Clone, Debug, Default)]
pub(crate) struct NamespaceLabels {
    by_name: BTreeMap<String, BTreeMap<String, String>>,
}

impl NamespaceLabels {
    /// The labels of `namespaces` as they are in the cluster.
    pub(crate) fn new(namespaces: &[Namespace]) -> Self {
        let by_name = namespaces
            .iter()
            .filter_map(|namespace| {
                let name = namespace.metadata.name.clone()?;
                let labels = namespace.metadata.labels.clone().unwrap_or_default();
                Some((name, labels))
            })
            .collect();
        Self { by_name }
    }

    /// Whether namespace `name` matches `selector`. A namespace that was not given is taken to
    /// carry only its `kubernetes.io/metadata.name` label, the one label every current API
    /// server guarantees.
    pub(crate) fn matches(&self, selector: &LabelSelector, name: &str) -> bool {
        match self.by_name.get(name) {
            Some(labels) => selector_matches(selector, labels),
            None => {
                let labels = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]);
                selector_matches(selector, &labels)
            }
        }
    }
}

/// Whether a rule's peer list admits `remote`: absent or empty admits everyone, otherwise any
/// one peer must (peers are OR-ed).
pub(crate) fn peers_admit(
    peers: Option<&[NetworkPolicyPeer]>,
    policy_namespace: &str,
    remote: Remote<'_>,
    namespaces: &NamespaceLabels,
) -> bool {
    match peers {
        None | Some([]) => true,
        Some(peers) => peers
            .iter()
            .any(|peer| peer_admits(peer, policy_namespace, remote, namespaces)),
    }
}

/// One peer. `ipBlock` matches the remote's addresses (any of a dual-stack pod's). Selectors
/// match only pods on the pod network: `podSelector` alone means pods of the policy's own
/// namespace, `namespaceSelector` alone every pod of the matching namespaces, both together
/// pods matching both. A peer with none of the three (rejected by the API server) admits
/// nothing.
fn peer_admits(
    peer: &NetworkPolicyPeer,
    policy_namespace: &str,
    remote: Remote<'_>,
    namespaces: &NamespaceLabels,
) -> bool {
    if let Some(block) = &peer.ip_block {
        return remote.ips().iter().any(|ip| ip_block_contains(block, *ip));
    }
    let Some(pod) = remote.pod().filter(|pod| !pod.host_network) else {
        return false;
    };
    let in_namespace = match (&peer.namespace_selector, &peer.pod_selector) {
        (None, None) => return false,
        (Some(selector), _) => namespaces.matches(selector, &pod.namespace),
        (None, Some(_)) => pod.namespace == policy_namespace,
    };
    in_namespace
        && peer
            .pod_selector
            .as_ref()
            .is_none_or(|selector| selector_matches(selector, &pod.labels))
}

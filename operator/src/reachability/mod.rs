//! Reachability: which pod can open a connection to which, under the NetworkPolicies present.
//!
//! A pure evaluator of Kubernetes NetworkPolicy (`networking.k8s.io/v1`) semantics over the
//! Pods, Namespaces and NetworkPolicies of a cluster, including policies Silo did not write.
//! No I/O: the caller lists the objects, builds a [`Cluster`] and asks it.
//!
//! Semantics (the Kubernetes documentation's "Network Policies" page and API reference, and
//! the API server's defaulting in `pkg/apis/networking/v1/defaults.go`):
//! - A pod selected by no policy for a direction is open in that direction; a pod selected by
//!   any policy for a direction admits only what the union of those policies' rules admits.
//! - A connection from A to B needs A's egress and B's ingress.
//! - `policyTypes` absent or empty: `Ingress`, plus `Egress` when the spec has an egress rule.
//! - `ingress: []` or absent isolates and admits nothing; a rule `{}` admits everything; a
//!   rule's `from`/`to` absent or empty admits every peer; `ports` absent or empty every port.
//! - Peers: `podSelector` alone selects pods of the policy's namespace, `namespaceSelector`
//!   alone every pod of the matching namespaces, both in one peer the pods matching both;
//!   `ipBlock` matches a pod whose address is in `cidr` and in no `except` block.
//! - Ports: protocol defaults to TCP; `endPort` makes a range; a named port resolves per
//!   destination pod (the target for ingress, the remote pod for egress), so one rule may
//!   admit different numbers on different pods.
//!
//! Decisions where Kubernetes leaves room:
//! - A pod reaching itself is always allowed: the documentation says "a pod cannot block
//!   access to itself", and the upstream conformance tests (`test/e2e/network/netpol`) call
//!   loopback "not yet defined" and ignore the diagonal (kubernetes/kubernetes#95879).
//! - Host-network pods: "NetworkPolicy behaviour for hostNetwork pods is undefined"; this
//!   follows the most common implementation, which ignores them when matching pod and
//!   namespace selectors and treats their traffic as node traffic. They are never isolated,
//!   match peers only through `ipBlock` (their address is the node's), and always reach pods
//!   on their own node ("traffic from the pod's local node" is always allowed in ingress).
//! - Pods that finished (`Succeeded`, `Failed`) are left out. Other pods are kept whether or
//!   not they have an address yet: selectors still apply; an `ipBlock` never matches a pod
//!   without an address. A dual-stack pod matches an `ipBlock` through either address.
//! - Objects the API server would reject (unknown selector operators, unparsable CIDRs, a
//!   peer with no selector and no `ipBlock`) match nothing.

mod cidr;
mod endpoints;
mod matrix;
mod peers;
mod policy;
mod ports;
mod selectors;
mod verdict;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

pub use cidr::{Cidr, CidrError};
pub use endpoints::{ContainerPort, PodEndpoint};
pub use matrix::{Matrix, Scope};
pub use peers::NAMESPACE_NAME_LABEL;
pub use ports::{Protocol, UnknownProtocol};
pub use selectors::selector_matches;
pub use verdict::{Direction, DirectionVerdict, Exemption, PolicyRef, Verdict};

use peers::{NamespaceLabels, Remote};
use policy::{Policy, Traffic};

/// The Pods, Namespaces and NetworkPolicies of a cluster, ready to answer reachability
/// questions.
#[derive(Clone, Debug)]
pub struct Cluster {
    namespaces: NamespaceLabels,
    pods: Vec<PodEndpoint>,
    policies: Vec<Policy>,
}

impl Cluster {
    /// A cluster of these objects. Pass every namespace a policy's `namespaceSelector` may
    /// look at (a missing one is taken to carry only `kubernetes.io/metadata.name`).
    pub fn new(namespaces: &[Namespace], pods: &[Pod], policies: &[NetworkPolicy]) -> Self {
        let mut pods: Vec<PodEndpoint> = pods.iter().filter_map(PodEndpoint::from_pod).collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut policies: Vec<Policy> = policies.iter().filter_map(Policy::new).collect();
        policies.sort_by(|a, b| a.reference.cmp(&b.reference));
        Self {
            namespaces: NamespaceLabels::new(namespaces),
            pods,
            policies,
        }
    }

    /// The pods evaluated, sorted by namespace and name (finished pods left out).
    pub fn pods(&self) -> &[PodEndpoint] {
        &self.pods
    }

    /// The pod `namespace/name`, if the cluster holds it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodEndpoint> {
        self.pods
            .iter()
            .find(|pod| pod.namespace == namespace && pod.name == name)
    }

    /// Whether `from` can open a connection to `to` on `port`/`protocol`.
    pub fn allows(
        &self,
        from: &PodEndpoint,
        to: &PodEndpoint,
        port: u16,
        protocol: Protocol,
    ) -> bool {
        self.explain(from, to, port, protocol).is_allowed()
    }

    /// The verdict on a connection from `from` to `to` with both sides explained.
    pub fn explain(
        &self,
        from: &PodEndpoint,
        to: &PodEndpoint,
        port: u16,
        protocol: Protocol,
    ) -> Verdict {
        if from.is_same_pod(to) {
            let exempt = DirectionVerdict::Exempt {
                reason: Exemption::SelfConnection,
            };
            return Verdict {
                egress: exempt.clone(),
                ingress: exempt,
            };
        }
        let traffic = Traffic { port, protocol };
        Verdict {
            egress: self.side(Direction::Egress, from, Remote::Pod(to), traffic),
            ingress: self.side(Direction::Ingress, to, Remote::Pod(from), traffic),
        }
    }

    /// The target's ingress verdict for a connection from an address that is not a pod (a
    /// client outside the cluster, a node): only `ipBlock` peers and peer-less rules admit it.
    pub fn ingress_from_address(
        &self,
        to: &PodEndpoint,
        source: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> DirectionVerdict {
        let traffic = Traffic { port, protocol };
        self.side(Direction::Ingress, to, Remote::Address(source), traffic)
    }

    /// The source's egress verdict for a connection to an address that is not a pod: only
    /// `ipBlock` peers and peer-less rules admit it, and named ports never do.
    pub fn egress_to_address(
        &self,
        from: &PodEndpoint,
        destination: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> DirectionVerdict {
        let traffic = Traffic { port, protocol };
        self.side(
            Direction::Egress,
            from,
            Remote::Address(destination),
            traffic,
        )
    }

    /// Every other pod that can reach `to` on `port`/`protocol`, with its verdict (whose
    /// [`Verdict::opened_by`] names the policies that open the way).
    pub fn sources_reaching(
        &self,
        to: &PodEndpoint,
        port: u16,
        protocol: Protocol,
    ) -> Vec<(&PodEndpoint, Verdict)> {
        self.pods
            .iter()
            .filter(|from| !from.is_same_pod(to))
            .map(|from| (from, self.explain(from, to, port, protocol)))
            .filter(|(_, verdict)| verdict.is_allowed())
            .collect()
    }

    /// One side of a connection: `local` is the pod whose policies decide (the source for
    /// egress, the target for ingress), `remote` the other end.
    fn side(
        &self,
        direction: Direction,
        local: &PodEndpoint,
        remote: Remote<'_>,
        traffic: Traffic,
    ) -> DirectionVerdict {
        if let Some(reason) = exemption(direction, local, remote) {
            return DirectionVerdict::Exempt { reason };
        }
        let mut isolated_by = Vec::new();
        let mut policies = Vec::new();
        for policy in self
            .policies
            .iter()
            .filter(|p| p.isolates(local, direction))
        {
            isolated_by.push(policy.reference.clone());
            if policy.admits(direction, local, remote, &self.namespaces, traffic) {
                policies.push(policy.reference.clone());
            }
        }
        if isolated_by.is_empty() {
            DirectionVerdict::NotIsolated
        } else if policies.is_empty() {
            DirectionVerdict::Denied { isolated_by }
        } else {
            DirectionVerdict::AllowedBy { policies }
        }
    }
}

/// What lets traffic through on `local`'s side whatever the policies say: `local` on the host
/// network, or ingress from a host-network pod on `local`'s node.
fn exemption(direction: Direction, local: &PodEndpoint, remote: Remote<'_>) -> Option<Exemption> {
    if local.host_network {
        return Some(Exemption::HostNetwork);
    }
    let from_own_node = remote.pod().is_some_and(|remote| {
        remote.host_network && remote.node.is_some() && remote.node == local.node
    });
    (direction == Direction::Ingress && from_own_node).then_some(Exemption::FromOwnNode)
}

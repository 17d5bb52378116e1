//! One NetworkPolicy: which pods it selects, in which directions it isolates them (with the
//! API server's `policyTypes` defaulting), and whether its rules admit a connection.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};

use super::endpoints::PodEndpoint;
use super::peers::{NamespaceLabels, Remote, peers_admit};
use super::ports::{Protocol, ports_admit};
use super::selectors::selector_matches;
use super::verdict::{Direction, PolicyRef};

/// A NetworkPolicy ready for evaluation.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Its namespace and name.
    pub(crate) reference: PolicyRef,
    spec: NetworkPolicySpec,
    isolates_ingress: bool,
    isolates_egress: bool,
}

/// A port and protocol a connection is opened to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Traffic {
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
}

impl Policy {
    /// The policy, or `None` without a namespace or name (every stored policy has both).
    ///
    /// `policyTypes` absent or empty defaults as the API server does: `Ingress` always, plus
    /// `Egress` when the spec has at least one egress rule.
    pub(crate) fn new(policy: &NetworkPolicy) -> Option<Self> {
        let reference = PolicyRef {
            namespace: policy.metadata.namespace.clone()?,
            name: policy.metadata.name.clone()?,
        };
        let spec = policy.spec.clone().unwrap_or_default();
        let (isolates_ingress, isolates_egress) = match spec.policy_types.as_deref() {
            None | Some([]) => (
                true,
                spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()),
            ),
            Some(types) => (
                types.iter().any(|kind| kind == "Ingress"),
                types.iter().any(|kind| kind == "Egress"),
            ),
        };
        Some(Self {
            reference,
            spec,
            isolates_ingress,
            isolates_egress,
        })
    }

    /// Whether the policy isolates `pod` in `direction`: it applies in that direction, lives in
    /// the pod's namespace, and its `podSelector` (absent = `{}` = every pod) matches. Host-network
    /// pods are never selected (the common implementation; Kubernetes leaves it undefined).
    pub(crate) fn isolates(&self, pod: &PodEndpoint, direction: Direction) -> bool {
        let applies = match direction {
            Direction::Ingress => self.isolates_ingress,
            Direction::Egress => self.isolates_egress,
        };
        applies
            && !pod.host_network
            && pod.namespace == self.reference.namespace
            && self
                .spec
                .pod_selector
                .as_ref()
                .is_none_or(|selector| selector_matches(selector, &pod.labels))
    }

    /// Whether one of the policy's rules in `direction` admits traffic between `local` (the
    /// selected pod) and `remote`. Named ports resolve on the destination: `local` for
    /// ingress, the remote pod for egress. No rules (`ingress: []` or absent) admit nothing;
    /// a rule `{}` admits everything.
    pub(crate) fn admits(
        &self,
        direction: Direction,
        local: &PodEndpoint,
        remote: Remote<'_>,
        namespaces: &NamespaceLabels,
        traffic: Traffic,
    ) -> bool {
        let namespace = self.reference.namespace.as_str();
        let admits = |peers, ports, destination| {
            ports_admit(ports, destination, traffic.port, traffic.protocol)
                && peers_admit(peers, namespace, remote, namespaces)
        };
        match direction {
            Direction::Ingress => self
                .spec
                .ingress
                .iter()
                .flatten()
                .any(|rule| admits(rule.from.as_deref(), rule.ports.as_deref(), Some(local))),
            Direction::Egress => self
                .spec
                .egress
                .iter()
                .flatten()
                .any(|rule| admits(rule.to.as_deref(), rule.ports.as_deref(), remote.pod())),
        }
    }
}

//! Verdicts and their explanation: which policy admitted a connection, or which direction
//! refused it and which policies isolate the pod there.

use std::fmt;

use serde::Serialize;

/// A direction of traffic relative to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Direction {
    /// Traffic into the pod (the target's `ingress` rules).
    Ingress,
    /// Traffic out of the pod (the source's `egress` rules).
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// A NetworkPolicy by namespace and name; displays as `<namespace>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyRef {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why Kubernetes lets a connection through whatever the policies say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Exemption {
    /// A pod connecting to itself: "a pod cannot block access to itself".
    SelfConnection,
    /// Ingress from the target's own node (here: a host-network pod on that node).
    FromOwnNode,
    /// The pod in this direction uses the host network, which NetworkPolicy does not isolate.
    HostNetwork,
}

/// The outcome in one direction, with the policies that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum DirectionVerdict {
    /// No NetworkPolicy selects the pod for this direction, so everything is allowed.
    NotIsolated,
    /// Every listed policy selects the pod and has a rule admitting the connection.
    AllowedBy {
        /// The admitting policies, sorted.
        policies: Vec<PolicyRef>,
    },
    /// The listed policies select the pod for this direction and none admits the connection.
    Denied {
        /// The policies isolating the pod, sorted.
        #[serde(rename = "isolatedBy")]
        isolated_by: Vec<PolicyRef>,
    },
    /// Allowed whatever the policies say.
    Exempt {
        /// Which rule of Kubernetes exempts it.
        reason: Exemption,
    },
}

impl DirectionVerdict {
    /// Whether this direction lets the connection through.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }

    /// The policies that admitted the connection (empty unless `AllowedBy`).
    pub fn admitting_policies(&self) -> &[PolicyRef] {
        match self {
            Self::AllowedBy { policies } => policies,
            _ => &[],
        }
    }
}

impl fmt::Display for DirectionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotIsolated => f.write_str("allowed: no policy selects the pod"),
            Self::AllowedBy { policies } => write!(f, "allowed by {}", joined(policies)),
            Self::Denied { isolated_by } => write!(
                f,
                "denied: isolated by {} and no rule admits it",
                joined(isolated_by)
            ),
            Self::Exempt { reason } => f.write_str(match reason {
                Exemption::SelfConnection => "allowed: a pod can always reach itself",
                Exemption::FromOwnNode => "allowed: traffic from the pod's own node",
                Exemption::HostNetwork => "allowed: host-network pods are not isolated",
            }),
        }
    }
}

fn joined(policies: &[PolicyRef]) -> String {
    let names: Vec<String> = policies.iter().map(PolicyRef::to_string).collect();
    names.join(", ")
}

/// The outcome of a pod-to-pod connection: it needs the source's egress AND the target's
/// ingress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The source pod's egress side.
    pub egress: DirectionVerdict,
    /// The target pod's ingress side.
    pub ingress: DirectionVerdict,
}

impl Verdict {
    /// Whether the connection is allowed in both directions.
    pub fn is_allowed(&self) -> bool {
        self.egress.is_allowed() && self.ingress.is_allowed()
    }

    /// The directions that refuse the connection: empty when allowed.
    pub fn denied_directions(&self) -> Vec<Direction> {
        let mut denied = Vec::new();
        if !self.egress.is_allowed() {
            denied.push(Direction::Egress);
        }
        if !self.ingress.is_allowed() {
            denied.push(Direction::Ingress);
        }
        denied
    }

    /// The policies that open an allowed connection, ingress side first then egress, without
    /// repeats; empty when it is denied or allowed only because nothing isolates it.
    pub fn opened_by(&self) -> Vec<&PolicyRef> {
        if !self.is_allowed() {
            return Vec::new();
        }
        let mut policies: Vec<&PolicyRef> = Vec::new();
        let sides = [&self.ingress, &self.egress];
        for policy in sides.iter().flat_map(|side| side.admitting_policies()) {
            if !policies.contains(&policy) {
                policies.push(policy);
            }
        }
        policies
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress {}; ingress {}", self.egress, self.ingress)
    }
}

//! Pods as the evaluator sees them: identity, labels, addresses, named ports, node.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Serialize;

use super::ports::{Protocol, declared_protocol};

/// A named container port: what a policy's named `port` resolves to on this pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ContainerPort {
    /// The port's name (`http`).
    pub name: String,
    /// The container port number.
    pub number: u16,
    /// The port's protocol (TCP when the container does not say).
    pub protocol: Protocol,
}

/// A pod reduced to what NetworkPolicy evaluation looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodEndpoint {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// `status.podIPs` (or `status.podIP`): empty until the pod has an address.
    pub ips: Vec<IpAddr>,
    /// Named ports of its containers, init (sidecar) containers included.
    pub ports: Vec<ContainerPort>,
    /// `spec.hostNetwork`: the pod shares its node's network namespace.
    pub host_network: bool,
    /// `spec.nodeName`, once scheduled.
    pub node: Option<String>,
}

impl PodEndpoint {
    /// The pod as the evaluator sees it, or `None` for a pod that has finished (phase
    /// `Succeeded` or `Failed`: it holds no address and its IP may already belong to another
    /// pod) or that lacks a name or namespace.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let status = pod.status.as_ref();
        let phase = status.and_then(|status| status.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let spec = pod.spec.as_ref();
        let containers = spec.into_iter().flat_map(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
        });
        Some(Self {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ips: pod_ips(pod),
            ports: containers.flat_map(named_ports).collect(),
            host_network: spec.and_then(|spec| spec.host_network) == Some(true),
            node: spec.and_then(|spec| spec.node_name.clone()),
        })
    }

    /// `<namespace>/<name>`, the pod's key in a matrix.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether this pod and `other` are the same pod.
    pub fn is_same_pod(&self, other: &PodEndpoint) -> bool {
        self.namespace == other.namespace && self.name == other.name
    }

    /// Whether a container port named `name` has number `port` and protocol `protocol`.
    pub fn has_named_port(&self, name: &str, port: u16, protocol: Protocol) -> bool {
        self.ports.iter().any(|candidate| {
            candidate.name == name && candidate.number == port && candidate.protocol == protocol
        })
    }
}

/// Every parsable address of `status.podIPs`, plus `status.podIP` when the list lacks it.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed = status
        .pod_ips
        .iter()
        .flatten()
        .map(|entry| entry.ip.as_str());
    let mut ips: Vec<IpAddr> = Vec::new();
    for text in listed.chain(status.pod_ip.as_deref()) {
        if let Ok(ip) = text.parse()
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    ips
}

/// The named ports of one container with a valid number and a known protocol.
fn named_ports(container: &Container) -> Vec<ContainerPort> {
    container
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            Some(ContainerPort {
                name: port.name.clone()?,
                number: u16::try_from(port.container_port).ok()?,
                protocol: declared_protocol(port.protocol.as_deref())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a valid Pod")
    }

    #[test]
    fn a_pod_keeps_its_addresses_named_ports_and_node() {
        let endpoint = PodEndpoint::from_pod(&pod(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-1", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "web", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"containerPort": 9090},
                ]}],
                "initContainers": [{"name": "proxy", "ports": [
                    {"name": "admin", "containerPort": 15000},
                ]}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.5",
                "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
            },
        })))
        .expect("a running pod is kept");
        assert_eq!(endpoint.key(), "shop/web-1");
        let expected: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(endpoint.ips, expected);
        assert!(endpoint.has_named_port("http", 8080, Protocol::Tcp));
        assert!(endpoint.has_named_port("dns", 53, Protocol::Udp));
        assert!(!endpoint.has_named_port("dns", 53, Protocol::Tcp));
        assert!(endpoint.has_named_port("admin", 15000, Protocol::Tcp));
        assert_eq!(endpoint.ports.len(), 3);
        assert_eq!(endpoint.node.as_deref(), Some("node-a"));
        assert!(!endpoint.host_network);
    }

    #[test]
    fn a_pending_pod_without_an_address_is_kept_with_no_ips() {
        let endpoint = PodEndpoint::from_pod(&pod(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-2"},
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Pending"},
        })))
        .expect("a pending pod is kept");
        assert!(endpoint.ips.is_empty());
    }

    #[test]
    fn finished_pods_are_left_out() {
        for phase in ["Succeeded", "Failed"] {
            let finished = pod(serde_json::json!({
                "metadata": {"namespace": "shop", "name": "job-1"},
                "spec": {"containers": [{"name": "job"}]},
                "status": {"phase": phase, "podIP": "10.0.0.9"},
            }));
            assert_eq!(PodEndpoint::from_pod(&finished), None, "{phase}");
        }
    }
}

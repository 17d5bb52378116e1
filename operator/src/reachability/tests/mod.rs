//! Tests of the evaluator, with fixtures built from small builders and JSON literals.

mod documentation;
mod explanations;
mod matrix;
mod semantics;
mod upstream;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::{
    Cluster, Direction, DirectionVerdict, Exemption, PodEndpoint, PolicyRef, Protocol, Verdict,
};

/// A namespace with `labels` plus the `kubernetes.io/metadata.name` label the API server adds.
fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    let mut all: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect();
    all.insert("kubernetes.io/metadata.name".into(), json!(name));
    serde_json::from_value(json!({"metadata": {"name": name, "labels": all}})).unwrap()
}

/// A NetworkPolicy from its JSON form.
fn policy(value: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(value).unwrap()
}

/// A running pod, built up step by step.
fn pod(namespace: &str, name: &str) -> PodFixture {
    PodFixture {
        namespace: namespace.into(),
        name: name.into(),
        labels: json!({}),
        ips: Vec::new(),
        ports: Vec::new(),
        node: "node-a".into(),
        host_network: false,
        phase: "Running".into(),
    }
}

struct PodFixture {
    namespace: String,
    name: String,
    labels: serde_json::Value,
    ips: Vec<String>,
    ports: Vec<serde_json::Value>,
    node: String,
    host_network: bool,
    phase: String,
}

impl PodFixture {
    fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        for (key, value) in pairs {
            self.labels[*key] = json!(value);
        }
        self
    }

    fn ip(mut self, ip: &str) -> Self {
        self.ips.push(ip.into());
        self
    }

    fn port(self, name: &str, number: u16) -> Self {
        self.port_over(name, number, "TCP")
    }

    fn port_over(mut self, name: &str, number: u16, protocol: &str) -> Self {
        self.ports
            .push(json!({"name": name, "containerPort": number, "protocol": protocol}));
        self
    }

    fn on_node(mut self, node: &str) -> Self {
        self.node = node.into();
        self
    }

    fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }

    fn phase(mut self, phase: &str) -> Self {
        self.phase = phase.into();
        self
    }

    fn build(&self) -> Pod {
        let pod_ips: Vec<serde_json::Value> = self.ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": self.namespace, "name": self.name, "labels": self.labels},
            "spec": {
                "nodeName": self.node,
                "hostNetwork": self.host_network,
                "containers": [{"name": "main", "ports": self.ports}],
            },
            "status": {"phase": self.phase, "podIP": self.ips.first(), "podIPs": pod_ips},
        }))
        .unwrap()
    }
}

fn cluster(namespaces: &[Namespace], pods: &[PodFixture], policies: &[NetworkPolicy]) -> Cluster {
    let pods: Vec<Pod> = pods.iter().map(PodFixture::build).collect();
    Cluster::new(namespaces, &pods, policies)
}

/// The verdict on `from` → `to` (both `<namespace>/<name>`) on `port`/`protocol`.
fn explain_over(cluster: &Cluster, from: &str, to: &str, port: u16, protocol: Protocol) -> Verdict {
    let find = |key: &str| {
        let (namespace, name) = key.split_once('/').unwrap();
        cluster
            .pod(namespace, name)
            .unwrap_or_else(|| panic!("no pod {key}"))
    };
    cluster.explain(find(from), find(to), port, protocol)
}

/// The verdict on `from` → `to` over TCP.
fn explain(cluster: &Cluster, from: &str, to: &str, port: u16) -> Verdict {
    explain_over(cluster, from, to, port, Protocol::Tcp)
}

/// Whether `from` reaches `to` over TCP.
fn reaches(cluster: &Cluster, from: &str, to: &str, port: u16) -> bool {
    explain(cluster, from, to, port).is_allowed()
}

/// Whether `from` reaches `to` over `protocol`.
fn reaches_over(cluster: &Cluster, from: &str, to: &str, port: u16, protocol: Protocol) -> bool {
    explain_over(cluster, from, to, port, protocol).is_allowed()
}

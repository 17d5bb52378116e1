//! The pod-to-pod matrix printed by `silo-operator access pods`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Cluster;
use super::ports::Protocol;

/// Which namespaces' pods a matrix covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every pod the cluster holds.
    AllNamespaces,
    /// Only pods of these namespaces.
    Namespaces(BTreeSet<String>),
}

impl Scope {
    /// Whether pods of `namespace` are in scope.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Self::AllNamespaces => true,
            Self::Namespaces(names) => names.contains(namespace),
        }
    }
}

/// Whether each pod can open a connection to each pod (itself included) on one port:
/// `{"port":80,"protocol":"TCP","matrix":{"<ns>/<from>":{"<ns>/<to>":true,...},...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    /// The destination port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// From pod key, to pod key, allowed; keys are `<namespace>/<name>`, sorted.
    pub matrix: BTreeMap<String, BTreeMap<String, bool>>,
}

impl Matrix {
    /// Whether `from` can reach `to`, or `None` when either is not in the matrix.
    pub fn allowed(&self, from: &str, to: &str) -> Option<bool> {
        self.matrix.get(from)?.get(to).copied()
    }
}

impl Cluster {
    /// The matrix of every in-scope pod to every in-scope pod on `port`/`protocol`.
    pub fn matrix(&self, scope: &Scope, port: u16, protocol: Protocol) -> Matrix {
        let pods: Vec<_> = self
            .pods()
            .iter()
            .filter(|pod| scope.contains(&pod.namespace))
            .collect();
        let matrix = pods
            .iter()
            .map(|from| {
                let row = pods
                    .iter()
                    .map(|to| (to.key(), self.allows(from, to, port, protocol)))
                    .collect();
                (from.key(), row)
            })
            .collect();
        Matrix {
            port,
            protocol,
            matrix,
        }
    }
}

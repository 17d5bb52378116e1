//! Protocols and the `ports` of a rule: numeric, ranges (`endPort`) and named ports.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::networking::v1::NetworkPolicyPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::endpoints::PodEndpoint;

/// A transport protocol NetworkPolicy can filter, spelled as Kubernetes spells it (`TCP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// `TCP`, the default of every port in Kubernetes.
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
}

/// A protocol name other than TCP, UDP or SCTP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected TCP, UDP or SCTP")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// Parses `TCP`, `UDP` or `SCTP`, in any letter case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Self::Tcp),
            "UDP" => Ok(Self::Udp),
            "SCTP" => Ok(Self::Sctp),
            _ => Err(UnknownProtocol(text.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// The protocol of a policy port or container port: absent means TCP, unknown means `None`.
pub(crate) fn declared_protocol(protocol: Option<&str>) -> Option<Protocol> {
    protocol.map_or(Some(Protocol::Tcp), |text| text.parse().ok())
}

/// Whether a rule's `ports` admit `port`/`protocol` on `destination`, the pod whose container
/// ports name the port: the target for ingress, the remote pod for egress (none when the remote
/// end is a bare address, so named ports never match it).
///
/// Absent or empty `ports` admit every port of every protocol.
pub(crate) fn ports_admit(
    ports: Option<&[NetworkPolicyPort]>,
    destination: Option<&PodEndpoint>,
    port: u16,
    protocol: Protocol,
) -> bool {
    match ports {
        None | Some([]) => true,
        Some(ports) => ports
            .iter()
            .any(|entry| port_admits(entry, destination, port, protocol)),
    }
}

/// One `ports` entry: its protocol (default TCP) must match; no `port` admits every port of
/// that protocol; a number admits it (up to `endPort` when set); a name admits the number the
/// destination pod gives a container port of that name and protocol.
fn port_admits(
    entry: &NetworkPolicyPort,
    destination: Option<&PodEndpoint>,
    port: u16,
    protocol: Protocol,
) -> bool {
    if declared_protocol(entry.protocol.as_deref()) != Some(protocol) {
        return false;
    }
    match &entry.port {
        None => true,
        Some(IntOrString::Int(first)) => {
            let last = entry.end_port.unwrap_or(*first);
            (*first..=last).contains(&i32::from(port))
        }
        Some(IntOrString::String(name)) => {
            destination.is_some_and(|pod| pod.has_named_port(name, port, protocol))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_in_any_case_and_print_as_kubernetes_spells_them() {
        assert_eq!("tcp".parse(), Ok(Protocol::Tcp));
        assert_eq!("UDP".parse(), Ok(Protocol::Udp));
        assert_eq!("Sctp".parse(), Ok(Protocol::Sctp));
        assert_eq!(
            "ICMP".parse::<Protocol>(),
            Err(UnknownProtocol("ICMP".into()))
        );
        assert_eq!(Protocol::Sctp.to_string(), "SCTP");
        assert_eq!(
            serde_json::to_string(&Protocol::Tcp).expect("serializes"),
            "\"TCP\""
        );
    }

    #[test]
    fn an_absent_protocol_is_tcp_and_an_unknown_one_is_none() {
        assert_eq!(declared_protocol(None), Some(Protocol::Tcp));
        assert_eq!(declared_protocol(Some("UDP")), Some(Protocol::Udp));
        assert_eq!(declared_protocol(Some("ICMP")), None);
    }
}

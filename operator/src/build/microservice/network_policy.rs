//! The NetworkPolicy of a service's pods: everything denied in both directions but what the
//! Service declares.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::super::pods_peer;
use super::Microservice;
use crate::isolation::DatabaseLocation;

/// Label of namespaces whose pods may call exposed services (an ingress controller's).
pub const INGRESS_NAMESPACE_LABEL: &str = "silo.dev/ingress";

/// The NetworkPolicy `<name>`. It selects the service's pods for ingress and egress, so they
/// are isolated both ways, and admits:
/// - in: the services whose `dependsOn` names this one and, when exposed, pods of namespaces
///   labelled `silo.dev/ingress=true`, on the service's port;
/// - out: DNS (UDP and TCP 53, to any address: a node-local resolver has no pod to select),
///   its database's pods (or address) on the engine port, each dependency's pods on its port,
///   and the broker's port (to any address: a policy cannot name a host).
pub fn service_network_policy(service: &Microservice) -> Result<NetworkPolicy, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": service.metadata(&service.name),
        "spec": {
            "podSelector": { "matchLabels": service.selector_labels() },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress(service),
            "egress": egress(service),
        },
    }))
}

fn tcp(port: u16) -> Value {
    json!({ "protocol": "TCP", "port": port })
}

fn ingress(service: &Microservice) -> Vec<Value> {
    let mut rules = Vec::new();
    let mut callers = service.callers.clone();
    callers.sort();
    callers.dedup();
    if !callers.is_empty() {
        let from: Vec<Value> = callers
            .iter()
            .map(|caller| caller.peer(&service.namespace))
            .collect();
        rules.push(json!({ "from": from, "ports": [tcp(service.port)] }));
    }
    if service.exposed {
        rules.push(json!({
            "from": [{ "namespaceSelector": { "matchLabels": { INGRESS_NAMESPACE_LABEL: "true" } } }],
            "ports": [tcp(service.port)],
        }));
    }
    rules
}

fn egress(service: &Microservice) -> Vec<Value> {
    let mut rules = vec![json!({
        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
    })];
    if let Some(rule) = service
        .database
        .as_ref()
        .and_then(|db| database_rule(&db.location, &service.namespace))
    {
        rules.push(rule);
    }
    let mut dependencies = service.dependencies.clone();
    dependencies.sort();
    for dependency in &dependencies {
        let labels = json!({ super::super::SERVICE_LABEL: dependency.name });
        rules.push(json!({
            "to": [pods_peer(&dependency.namespace, &labels, &service.namespace)],
            "ports": [tcp(dependency.port)],
        }));
    }
    if let Some(broker) = &service.broker {
        rules.push(json!({ "ports": [tcp(broker.port)] }));
    }
    rules
}

/// The egress rule to a database: its server's pods, its IP address, or (a host name) its port
/// on any address. None while it is not known where it listens.
fn database_rule(location: &DatabaseLocation, namespace: &str) -> Option<Value> {
    match location {
        DatabaseLocation::Pods(pods) => Some(json!({
            "to": [pods_peer(&pods.namespace, &json!(pods.selector), namespace)],
            "ports": [tcp(pods.port)],
        })),
        DatabaseLocation::External { host, port } => Some(match host.parse::<IpAddr>() {
            Ok(ip) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                json!({ "to": [{ "ipBlock": { "cidr": format!("{ip}/{bits}") } }], "ports": [tcp(*port)] })
            }
            Err(_) => json!({ "ports": [tcp(*port)] }),
        }),
        DatabaseLocation::Unknown(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::assert_matches;
    use crate::build::microservice::fixtures::booking;

    #[test]
    fn the_network_policy_matches_fixture() {
        assert_matches(
            &service_network_policy(&booking()).unwrap(),
            "booking-service.networkpolicy.yaml",
        );
    }

    #[test]
    fn with_no_caller_and_not_exposed_all_ingress_is_denied() {
        let mut service = booking();
        service.callers.clear();
        service.exposed = false;
        let policy = service_network_policy(&service).unwrap();
        let spec = policy.spec.unwrap();
        assert_eq!(spec.ingress, Some(vec![]));
        assert_eq!(
            spec.policy_types,
            Some(vec!["Ingress".to_string(), "Egress".to_string()])
        );
    }

    #[test]
    fn an_external_database_is_reached_by_address_or_by_port() {
        let by_ip = database_rule(
            &DatabaseLocation::External {
                host: "10.1.2.3".into(),
                port: 5432,
            },
            "shop",
        )
        .unwrap();
        assert_eq!(by_ip["to"][0]["ipBlock"]["cidr"], "10.1.2.3/32");
        let by_name = database_rule(
            &DatabaseLocation::External {
                host: "pg.example.com".into(),
                port: 6432,
            },
            "shop",
        )
        .unwrap();
        assert!(by_name.get("to").is_none());
        assert_eq!(by_name["ports"][0]["port"], 6432);
        assert!(database_rule(&DatabaseLocation::Unknown("x".into()), "shop").is_none());
    }

    #[test]
    fn callers_and_dependencies_of_other_namespaces_are_matched_by_namespace_name() {
        let mut service = booking();
        service.callers[0].namespace = "billing".into();
        service.dependencies[0].namespace = "accounts".into();
        let policy = serde_json::to_value(service_network_policy(&service).unwrap()).unwrap();
        let caller = &policy["spec"]["ingress"][0]["from"][0];
        assert_eq!(
            caller["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "billing"
        );
        let dependency = &policy["spec"]["egress"][2]["to"][0];
        assert_eq!(
            dependency["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "accounts"
        );
        assert_eq!(
            dependency["podSelector"]["matchLabels"]["silo.dev/service"],
            "user-service"
        );
    }
}

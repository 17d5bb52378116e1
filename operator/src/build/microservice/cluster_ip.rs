//! The ClusterIP Service that gives a service its in-cluster name,
//! `<name>.<namespace>.svc`.

use k8s_openapi::api::core::v1::Service as KubeService;
use serde_json::json;

use super::{HTTP_PORT_NAME, Microservice};

/// A ClusterIP Service `<name>` on the service's port, selecting its pods.
pub fn cluster_ip_service(service: &Microservice) -> Result<KubeService, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": service.metadata(&service.name),
        "spec": {
            "type": "ClusterIP",
            "selector": service.selector_labels(),
            "ports": [{
                "name": HTTP_PORT_NAME,
                "port": service.port,
                "targetPort": HTTP_PORT_NAME,
                "protocol": "TCP",
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::assert_matches;
    use crate::build::microservice::fixtures::booking;

    #[test]
    fn the_cluster_ip_service_matches_fixture() {
        assert_matches(
            &cluster_ip_service(&booking()).unwrap(),
            "booking-service.service.yaml",
        );
    }
}

//! The headless Service in front of a server's StatefulSet.

use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::Workload;

/// A headless Service selecting the server's pod on the engine port.
pub fn service(workload: &Workload) -> Result<Service, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": workload.labels(),
            "ownerReferences": [workload.owner],
        },
        "spec": {
            "clusterIP": "None",
            "selector": workload.selector_labels(),
            "ports": [{
                "name": workload.engine.as_str(),
                "port": workload.port(),
                "targetPort": workload.port(),
                "protocol": "TCP",
            }],
            // The operator must reach a starting server to initiate a MongoDB replica set.
            "publishNotReadyAddresses": true,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{assert_matches, load};
    use crate::crd::DatabaseServer;

    #[test]
    fn managed_server_service_matches_fixture() {
        let server: DatabaseServer = load("managed-postgres.server.yaml");
        let spec = server.spec.managed.clone().unwrap();
        let workload = Workload::managed(&server, &spec, &Default::default()).unwrap();
        assert_matches(
            &service(&workload).unwrap(),
            "managed-postgres.service.yaml",
        );
    }
}

//! The ServiceAccount a service's pods run as: no API token mounted, since a service has no
//! business with the Kubernetes API.

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

use super::Microservice;

/// The ServiceAccount `<name>`, with token automounting off.
pub fn service_account(service: &Microservice) -> Result<ServiceAccount, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": service.metadata(&service.name),
        "automountServiceAccountToken": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::microservice::fixtures::booking;

    #[test]
    fn the_service_account_mounts_no_token_and_is_owned_by_the_service() {
        let account = service_account(&booking()).unwrap();
        assert_eq!(account.automount_service_account_token, Some(false));
        let owners = account.metadata.owner_references.unwrap();
        assert_eq!(owners[0].kind, "Service");
        assert_eq!(owners[0].controller, Some(true));
    }
}

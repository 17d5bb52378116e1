//! The `Database` a service's `database.template` asks for, owned by the Service.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::super::{MANAGED_BY, SERVICE_LABEL};
use crate::crd::{Database, DatabaseTemplate};

/// Name of the `Database` created from a service's template: `<service>-db`.
pub fn owned_database_name(service: &str) -> String {
    format!("{service}-db")
}

/// The `Database` `<service>-db` of `template`, owned by `service` (its `owner` and its
/// controller). Its credentials Secret is `<service>-db` unless the template names one.
pub fn owned_database(
    service: &str,
    namespace: &str,
    owner: &OwnerReference,
    template: &DatabaseTemplate,
) -> Result<Database, serde_json::Error> {
    let name = owned_database_name(service);
    let mut credentials = template.credentials.clone();
    if credentials.secret_name.is_none() {
        credentials.secret_name = Some(name.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Database",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { MANAGED_BY.0: MANAGED_BY.1, SERVICE_LABEL: service },
            "ownerReferences": [owner],
        },
        "spec": {
            "engine": template.engine,
            "owner": service,
            "server": template.server,
            "deletionPolicy": template.deletion_policy,
            "credentials": credentials,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::assert_matches;
    use crate::build::microservice::fixtures::booking;
    use crate::crd::{DeletionPolicy, Engine, ServerBinding};

    #[test]
    fn the_owned_database_is_named_after_the_service_and_owned_by_it() {
        let template = DatabaseTemplate {
            engine: Engine::Postgres,
            server: ServerBinding {
                server_ref: Some("shared-pg".into()),
                dedicated: None,
            },
            deletion_policy: DeletionPolicy::Delete,
            credentials: Default::default(),
        };
        let service = booking();
        let db = owned_database(&service.name, "shop", &service.owner, &template).unwrap();
        assert_matches(&db, "booking-service.database.yaml");
        crate::validate::database(&db).unwrap();
    }
}

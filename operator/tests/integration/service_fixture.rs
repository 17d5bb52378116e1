//! `Service` resources for the tests, and waits on what the controller makes of them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use silo_operator::crd::{Database, Service};

use crate::harness::{Harness, eventually};

/// A `Service` under construction:
/// `ServiceFixture::new().replicas(0).database_on(&h.server).depends_on("user-service").build("booking")`.
pub struct ServiceFixture {
    spec: Value,
}

impl ServiceFixture {
    /// An image that is never pulled here (tests without pods run zero replicas).
    pub fn new() -> Self {
        Self {
            spec: json!({ "image": "registry.example.com/shop/app:1.0" }),
        }
    }

    /// Sets `field` of the spec to `value`.
    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.spec[field] = value;
        self
    }

    /// Sets the number of pods.
    pub fn replicas(self, replicas: i32) -> Self {
        self.with("replicas", json!(replicas))
    }

    /// A PostgreSQL database from a template, on the shared server `server`, dropped with it.
    pub fn database_on(self, server: &str) -> Self {
        self.with(
            "database",
            json!({ "template": {
                "engine": "postgres",
                "server": { "serverRef": server },
                "deletionPolicy": "Delete",
            } }),
        )
    }

    /// Adds a dependency on `service` of the same namespace.
    pub fn depends_on(mut self, service: &str) -> Self {
        let mut list = self.spec["dependsOn"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.push(json!({ "service": service }));
        self.spec["dependsOn"] = json!(list);
        self
    }

    /// The `Service` named `name`.
    pub fn build(self, name: &str) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "silo.dev/v1alpha1",
            "kind": "Service",
            "metadata": { "name": name },
            "spec": self.spec,
        }))
        .unwrap_or_else(|e| panic!("Service fixture {name}: {e}"))
    }
}

/// The `Service` API of the test namespace.
pub fn services(h: &Harness) -> Api<Service> {
    Api::namespaced(h.client.clone(), h.ns())
}

/// Creates `service` in the test namespace.
pub async fn create_service(h: &Harness, service: &Service) -> Service {
    services(h)
        .create(&PostParams::default(), service)
        .await
        .unwrap_or_else(|e| panic!("cannot create Service {}: {e}", service.name_any()))
}

/// The condition `type_` of `service`, if it has one.
pub fn service_condition(service: &Service, type_: &str) -> Option<Condition> {
    service
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Waits until `check` accepts Service `name`; returns what it returned.
pub async fn wait_service<T>(
    h: &Harness,
    name: &str,
    what: &str,
    check: impl Fn(&Service) -> Option<T>,
) -> T {
    let api = services(h);
    let check = &check;
    eventually(&format!("Service {name}: {what}"), || {
        let api = api.clone();
        async move { check(&api.get(name).await.ok()?) }
    })
    .await
}

/// Waits until condition `type_` of Service `name` has `status` and `reason`; returns it.
pub async fn wait_service_condition(
    h: &Harness,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Condition {
    wait_service(h, name, &format!("{type_}={status}/{reason}"), |service| {
        service_condition(service, type_).filter(|c| c.status == status && c.reason == reason)
    })
    .await
}

/// Deletes every Service of the test and waits until the Databases they owned are gone (the
/// garbage collector deletes them, the controller drops their data), so that the harness can
/// finish with the Databases left.
pub async fn delete_services(h: &Harness) {
    let api = services(h);
    for service in api.list(&Default::default()).await.unwrap() {
        api.delete(&service.name_any(), &DeleteParams::background())
            .await
            .unwrap();
    }
    let databases = h.databases();
    eventually("the Services' Databases to be gone", || {
        let databases = databases.clone();
        async move {
            let left: Vec<Database> = databases.list(&Default::default()).await.ok()?.items;
            let owned = left
                .iter()
                .any(|db| db.owner_references().iter().any(|r| r.kind == "Service"));
            (!owned).then_some(())
        }
    })
    .await;
}

//! The report on the booking system as Silo fences it: the policies are the ones the builders
//! write for three Services with dedicated databases.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use serde_json::json;

use super::*;
use crate::build::microservice::{
    Credentials, DatabaseWiring, Dependency, Microservice, service_network_policy,
};
use crate::build::{AllowedClient, Workload, network_policy};
use crate::crd::{Database, ProbesSpec, Service};
use crate::isolation::{DatabaseLocation, locate};

const NS: &str = "shop";

fn service(name: &str, depends_on: &[&str]) -> Service {
    let dependencies: Vec<_> = depends_on.iter().map(|d| json!({ "service": d })).collect();
    serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "Service",
        "metadata": { "name": name, "namespace": NS, "uid": format!("uid-{name}") },
        "spec": {
            "image": format!("localhost/silo/{name}:0.1.0"),
            "database": { "template": { "engine": "postgres",
                "server": { "dedicated": { "storage": { "size": "1Gi" } } } } },
            "dependsOn": dependencies,
        },
    }))
    .unwrap()
}

fn database(service: &str) -> Database {
    serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "Database",
        "metadata": { "name": format!("{service}-db"), "namespace": NS, "uid": format!("db-{service}") },
        "spec": { "engine": "postgres", "owner": service,
                  "server": { "dedicated": { "storage": { "size": "1Gi" } } } },
    }))
    .unwrap()
}

fn pod(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": { "containers": [{ "name": "app",
            "ports": [{ "name": "http", "containerPort": 8080 }] }] },
        "status": { "phase": "Running" },
    }))
    .unwrap()
}

fn service_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("silo.dev/service".to_string(), name.to_string())])
}

/// The policies Silo writes for `service` and its dedicated server.
fn silo_policies(service: &Service, callers: &[&str]) -> Vec<NetworkPolicy> {
    let name = service.name_any();
    let db = database(&name);
    let spec = db.spec.server.dedicated.clone().unwrap();
    let workload = Workload::dedicated(&db, &spec, &Default::default()).unwrap();
    let owner = AllowedClient {
        namespace: NS.into(),
        owner: name.clone(),
    };
    let microservice = Microservice {
        name: name.clone(),
        namespace: NS.into(),
        owner: Default::default(),
        image: service.spec.image.clone(),
        port: 8080,
        replicas: 1,
        env: Vec::new(),
        resources: None,
        probes: ProbesSpec::default(),
        database: Some(DatabaseWiring {
            name: db.name_any(),
            credentials: Some(Credentials {
                secret_name: db.name_any(),
                rotation: String::new(),
            }),
            location: locate(&db, None, []),
        }),
        dependencies: service
            .spec
            .depends_on
            .iter()
            .map(|d| Dependency {
                namespace: NS.into(),
                name: d.service.clone(),
                port: 8080,
            })
            .collect(),
        callers: callers
            .iter()
            .map(|c| AllowedClient {
                namespace: NS.into(),
                owner: c.to_string(),
            })
            .collect(),
        broker: None,
        exposed: false,
    };
    assert!(matches!(
        microservice.database.as_ref().unwrap().location,
        DatabaseLocation::Pods(_)
    ));
    vec![
        service_network_policy(&microservice).unwrap(),
        network_policy(&workload, &[owner], "silo-system").unwrap(),
    ]
}

fn booking_system() -> Inventory {
    let user = service("user-service", &[]);
    let booking = service("booking-service", &["user-service"]);
    let payment = service("payment-service", &["user-service"]);
    let mut policies = silo_policies(&user, &["booking-service", "payment-service"]);
    policies.extend(silo_policies(&booking, &[]));
    policies.extend(silo_policies(&payment, &[]));
    let mut pods = Vec::new();
    for name in ["user-service", "booking-service", "payment-service"] {
        pods.push(pod(NS, &format!("{name}-7d9f-1"), service_labels(name)));
        let db = database(name);
        let spec = db.spec.server.dedicated.clone().unwrap();
        let workload = Workload::dedicated(&db, &spec, &Default::default()).unwrap();
        pods.push(pod(NS, &format!("{}-0", workload.name), workload.labels()));
    }
    let operator = BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        "silo-operator".to_string(),
    )]);
    pods.push(pod("silo-system", "silo-operator-5c4b-1", operator));
    let namespace = |name: &str| -> Namespace {
        serde_json::from_value(json!({ "metadata": { "name": name,
            "labels": { "kubernetes.io/metadata.name": name } } }))
        .unwrap()
    };
    Inventory {
        services: vec![user, booking, payment],
        databases: ["user-service", "booking-service", "payment-service"]
            .map(database)
            .to_vec(),
        servers: Vec::new(),
        pods,
        namespaces: vec![namespace(NS), namespace("silo-system")],
        policies,
    }
}

fn entry<'a>(report: &'a AccessReport, name: &str) -> &'a ServiceAccess {
    report.services.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn booking_reaches_user_user_does_not_reach_booking_and_each_database_only_its_owner() {
    let report = report(&booking_system(), &scope(&[NS.to_string()]), "silo-system");
    let user = entry(&report, "user-service");
    assert_eq!(
        user.callers.allowed,
        ["shop/booking-service", "shop/payment-service"]
    );
    let booking = entry(&report, "booking-service");
    assert!(booking.callers.allowed.is_empty());
    assert!(
        booking
            .callers
            .denied
            .contains(&"shop/user-service".to_string())
    );
    for service in &report.services {
        let db = service.database.as_ref().unwrap();
        assert!(db.isolated, "{}: {}", service.name, db.message);
        assert_eq!(db.placement, "dedicated");
        assert_eq!(
            db.callers.allowed,
            [
                format!("shop/{}", service.name),
                "silo-system (operator)".to_string()
            ]
        );
    }
}

#[test]
fn a_hand_written_allow_all_shows_in_the_report() {
    let mut system = booking_system();
    system.policies.push(
        serde_json::from_value(json!({
            "metadata": { "name": "allow-everything", "namespace": NS },
            "spec": { "podSelector": {}, "ingress": [{}] },
        }))
        .unwrap(),
    );
    let report = report(&system, &Scope::AllNamespaces, "silo-system");
    let user = entry(&report, "user-service").database.as_ref().unwrap();
    assert!(!user.isolated);
    assert_eq!(user.reason, "OpenedByPolicy");
    // The other servers' pods have no egress policy; the services' own egress still holds.
    assert!(
        user.callers
            .allowed
            .contains(&"shop/booking-service-db-dbserver-0 (pod)".to_string()),
        "{:?}",
        user.callers
    );
    assert!(
        !user
            .callers
            .allowed
            .contains(&"shop/booking-service".to_string())
    );
    assert!(render(&report).contains("shop/user-service: other pods can reach port 5432"));
}

#[test]
fn the_table_has_one_row_per_service() {
    let text = render(&report(
        &booking_system(),
        &scope(&[NS.to_string()]),
        "silo-system",
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE  SERVICE"), "{text}");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[3].starts_with("shop       user-service"), "{text}");
    assert!(
        lines[3].contains(" booking-service,payment-service "),
        "{text}"
    );
    assert!(
        lines[1].contains(" payment-service,user-service (+3 pods) "),
        "{text}"
    );
    assert!(lines[3].ends_with("True (OnlyOwnerReaches)"), "{text}");
}

#[test]
fn the_pod_matrix_is_the_documented_json() {
    let system = booking_system();
    let cluster = Cluster::new(&system.namespaces, &system.pods, &system.policies);
    let matrix = cluster.matrix(&scope(&[NS.to_string()]), 8080, Protocol::Tcp);
    let text = serde_json::to_value(&matrix).unwrap();
    assert_eq!(text["port"], 8080);
    assert_eq!(text["protocol"], "TCP");
    assert_eq!(
        text["matrix"]["shop/booking-service-7d9f-1"]["shop/user-service-7d9f-1"],
        true
    );
    assert_eq!(
        text["matrix"]["shop/user-service-7d9f-1"]["shop/booking-service-7d9f-1"],
        false
    );
    assert_eq!(
        text["matrix"]["shop/user-service-7d9f-1"]["shop/user-service-7d9f-1"],
        true
    );
}

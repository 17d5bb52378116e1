//! `silo-operator access` run as a user runs it, against the local API server.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::harness::Harness;
use crate::service_fixture::{
    ServiceFixture, create_service, delete_services, wait_service_condition,
};

/// Runs `silo-operator access <args>` with the environment's kubeconfig; returns its stdout.
fn access(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_silo-operator"))
        .arg("access")
        .args(args)
        .env("KUBECONFIG", silo_testenv::require("KUBECONFIG"))
        .output()
        .expect("silo-operator runs");
    assert!(
        output.status.success(),
        "silo-operator access {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A pod of `service` that is never scheduled: the evaluation needs only the object.
async fn service_pod(h: &Harness, name: &str, service: &str) {
    silo_testenv::apply::<Pod>(
        &h.client,
        h.ns(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "labels": { "silo.dev/service": service } },
            "spec": {
                "schedulerName": "silo-tests-never-scheduled",
                "containers": [{ "name": "app", "image": "registry.example.com/none:1" }],
            },
        }),
    )
    .await;
}

#[tokio::test]
async fn access_reports_who_reaches_each_service_and_the_pod_matrix() {
    let h = Harness::start("silo-access").await;
    create_service(&h, &ServiceFixture::new().replicas(0).build("user-service")).await;
    create_service(
        &h,
        &ServiceFixture::new()
            .replicas(0)
            .depends_on("user-service")
            .build("booking-service"),
    )
    .await;
    for name in ["user-service", "booking-service"] {
        wait_service_condition(&h, name, "Ready", "True", "Ready").await;
    }
    service_pod(&h, "user-1", "user-service").await;
    service_pod(&h, "booking-1", "booking-service").await;
    let ns = h.ns();

    let report: Value = serde_json::from_str(&access(&["-n", ns, "-o", "json"])).unwrap();
    let entry = |name: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        entry("user-service")["callers"],
        json!({ "allowed": [format!("{ns}/booking-service")], "denied": [] })
    );
    assert_eq!(
        entry("booking-service")["callers"],
        json!({ "allowed": [], "denied": [format!("{ns}/user-service")] })
    );
    let table = access(&["--namespace", ns]);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    let user_row = table
        .lines()
        .find(|l| l.contains(" user-service "))
        .unwrap();
    assert!(user_row.starts_with(ns), "{table}");
    assert!(user_row.contains(" booking-service "), "{table}");

    let matrix: Value = serde_json::from_str(&access(&[
        "pods",
        "--namespace",
        ns,
        "--port",
        "8080",
        "--protocol",
        "TCP",
        "--output",
        "json",
    ]))
    .unwrap();
    let booking = format!("{ns}/booking-1");
    let user = format!("{ns}/user-1");
    assert_eq!(
        matrix,
        json!({
            "port": 8080,
            "protocol": "TCP",
            "matrix": {
                booking.clone(): { booking.clone(): true, user.clone(): true },
                user.clone(): { booking: false, user: true },
            },
        })
    );
    delete_services(&h).await;
    h.finish().await;
}

//! `Isolated`, measured over the Pods, Namespaces and NetworkPolicies actually in the cluster:
//! a policy Silo did not write that re-opens a database is found and named at once.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::harness::Harness;
use crate::service_fixture::{
    ServiceFixture, create_service, delete_services, wait_service_condition,
};

#[tokio::test]
async fn a_hand_written_allow_all_policy_flips_isolated_and_is_named_until_removed() {
    let h = Harness::start("silo-svc-iso").await;
    // A dedicated server: its pods are what the policies are judged on.
    create_service(
        &h,
        &ServiceFixture::new()
            .replicas(0)
            .with(
                "database",
                json!({ "template": {
                    "engine": "postgres",
                    "server": { "dedicated": { "storage": { "size": "64Mi" } } },
                    "deletionPolicy": "Delete",
                } }),
            )
            .build("user-service"),
    )
    .await;
    // Somebody else's pod in another namespace; it is never scheduled, a pod object is
    // enough for the evaluation.
    let elsewhere = silo_testenv::TestNamespace::create(&h.client, "silo-svc-bystander").await;
    silo_testenv::apply::<Pod>(
        &h.client,
        elsewhere.name(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "bystander", "labels": { "silo.dev/service": "user-service" } },
            "spec": {
                "schedulerName": "silo-tests-never-scheduled",
                "containers": [{ "name": "c", "image": "registry.example.com/none:1" }],
            },
        }),
    )
    .await;
    let fenced =
        wait_service_condition(&h, "user-service", "Isolated", "True", "OnlyOwnerReaches").await;
    assert!(
        fenced.message.contains("user-service-db-dbserver"),
        "{}",
        fenced.message
    );

    let policies = Api::<NetworkPolicy>::namespaced(h.client.clone(), h.ns());
    silo_testenv::apply::<NetworkPolicy>(
        &h.client,
        h.ns(),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "name": "allow-everything" },
            "spec": { "podSelector": {}, "ingress": [{}] },
        }),
    )
    .await;
    // The policy's own watch event wakes the Service: the wait gives up long before the next
    // check for drift (WAIT_LIMIT < the harness's drift interval), so a flip seen here came
    // from that event, and that reconcile read the policy from the same watch.
    let opened =
        wait_service_condition(&h, "user-service", "Isolated", "False", "OpenedByPolicy").await;
    assert!(
        opened
            .message
            .contains(&format!("NetworkPolicy {}/allow-everything", h.ns())),
        "{}",
        opened.message
    );
    // The bystander is one of them (the message names the first few pods, sorted).
    assert!(
        opened.message.starts_with("other pods can reach port 5432"),
        "{}",
        opened.message
    );

    policies
        .delete("allow-everything", &DeleteParams::default())
        .await
        .unwrap();
    wait_service_condition(&h, "user-service", "Isolated", "True", "OnlyOwnerReaches").await;
    delete_services(&h).await;
    h.finish().await;
}

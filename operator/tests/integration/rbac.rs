//! The operator works with nothing more than `crds/rbac/clusterrole.yaml` grants.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use crate::harness::{DatabaseFixture, Harness};
use crate::service_fixture::{
    ServiceFixture, create_service, delete_services, wait_service_condition,
};

/// A client that acts as the service account `namespace/name` (the test user may impersonate).
async fn service_account_client(namespace: &str, name: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(silo_testenv::require("KUBECONFIG")).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]);
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn the_operator_provisions_and_deletes_with_only_its_cluster_role() {
    let mut h = Harness::start("silo-rbac").await;
    let role_name = format!("silo-operator-{}", h.ns());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/rbac/clusterrole.yaml"),
    )
    .unwrap();
    let mut role: ClusterRole = serde_yaml::from_str(&text).unwrap();
    role.metadata.name = Some(role_name.clone());
    let roles = Api::<ClusterRole>::all(h.client.clone());
    let params = PatchParams::apply("silo-operator-tests").force();
    roles
        .patch(&role_name, &params, &Patch::Apply(&role))
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": role_name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name },
        "subjects": [ { "kind": "ServiceAccount", "name": "silo-operator", "namespace": h.ns() } ],
    }))
    .unwrap();
    let bindings = Api::<ClusterRoleBinding>::all(h.client.clone());
    bindings
        .patch(&role_name, &params, &Patch::Apply(&binding))
        .await
        .unwrap();

    let restricted = service_account_client(h.ns(), "silo-operator").await;
    // The operator never reads ConfigMaps.
    let config_maps = Api::<k8s_openapi::api::core::v1::ConfigMap>::all(restricted.clone());
    let forbidden = config_maps.list(&Default::default()).await;
    assert!(
        matches!(forbidden, Err(kube::Error::Api(ref s)) if s.code == 403),
        "the impersonated client must be restricted (is RBAC enabled?): {forbidden:?}"
    );
    h.start_controller_as(restricted);
    h.create_shared("limited").await;
    h.wait_ready("limited").await;
    h.secret("limited-db").await;
    h.delete_and_wait("limited").await;

    // A dedicated server: StatefulSet, Service, NetworkPolicy and admin Secret are created.
    h.create(
        &DatabaseFixture::dedicated(silo_operator::crd::Engine::Postgres)
            .owner("alone")
            .build("alone"),
    )
    .await;
    let waiting = h.wait_condition("alone", "ServerReady", "False").await;
    let reason = waiting
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ServerReady")
        .unwrap()
        .reason;
    assert_eq!(reason, "WaitingForServer");
    h.delete_and_wait("alone").await;

    // A Service: the Database of its template, its workload, the isolation measurement.
    let service = ServiceFixture::new()
        .replicas(0)
        .database_on(&h.server)
        .build("fenced");
    create_service(&h, &service).await;
    wait_service_condition(&h, "fenced", "Ready", "True", "Ready").await;
    delete_services(&h).await;

    // Still restricted: releasing the server's finalizer needs nothing beyond the ClusterRole.
    h.finish().await;
    let _ = bindings.delete(&role_name, &DeleteParams::default()).await;
    let _ = roles.delete(&role_name, &DeleteParams::default()).await;
}

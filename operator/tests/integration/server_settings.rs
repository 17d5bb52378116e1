//! What the operator connects to a server with: the admin Secret it may read, and changes that
//! take effect on the next reconcile.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use silo_operator::crd::DatabaseServer;

use crate::harness::{Harness, eventually, server_not_ready};

async fn set_tls_mode(h: &Harness, mode: &str) {
    Api::<DatabaseServer>::all(h.client.clone())
        .patch(
            &h.server,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "external": { "tls": { "mode": mode } } } })),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_changed_tls_mode_is_used_by_the_next_reconcile() {
    let h = Harness::start("silo-tls").await;
    // The local server has no certificate a client could verify.
    set_tls_mode(&h, "verify-full").await;
    h.create_shared("tls").await;
    let failed = h.wait_condition("tls", "ServerReady", "False").await;
    let reason = failed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ServerReady")
        .unwrap()
        .reason;
    assert_eq!(reason, "ServerUnreachable");

    set_tls_mode(&h, "disable").await;
    // Retried with backoff (no restart, no change of the Database).
    h.wait_ready("tls").await;
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    eventually("the server to be Ready with TLS disabled", || {
        let servers = servers.clone();
        let name = h.server.clone();
        async move {
            let server = servers.get(&name).await.ok()?;
            server
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    h.finish().await;
}

#[tokio::test]
async fn an_admin_secret_outside_the_operators_namespace_is_refused() {
    let h = Harness::start("silo-deputy").await;
    // Someone who may create DatabaseServers points one at a Secret of another namespace.
    let victim = silo_testenv::TestNamespace::create(&h.client, "silo-victim").await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "payments-db", "namespace": victim.name() },
        "stringData": { "username": "payments", "password": "not-yours" },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client.clone(), victim.name())
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    let name = format!("deputy-{}", h.ns());
    let server: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
        "metadata": { "name": name, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": { "engine": "postgres", "external": {
            "host": "attacker.example", "port": 5432,
            "adminSecretRef": { "name": "payments-db", "namespace": victim.name() },
            "tls": { "mode": "disable" },
        } },
    }))
    .unwrap();
    servers.create(&Default::default(), &server).await.unwrap();
    let refused = server_not_ready(&h.client, &name, "InvalidSpec").await;
    assert!(
        refused.message.starts_with(&format!(
            "spec.external.adminSecretRef.namespace is {}, but the operator reads admin Secrets only from its own namespace {}",
            victim.name(),
            h.ns()
        )),
        "{}",
        refused.message
    );
    // A Database on it waits, and says where to look.
    h.create(
        &crate::harness::DatabaseFixture::shared_on(&name)
            .owner("orders")
            .build("orders"),
    )
    .await;
    let waiting = h.wait_condition("orders", "ServerReady", "False").await;
    let reason = waiting
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ServerReady")
        .unwrap()
        .reason;
    assert_eq!(reason, "ServerInvalid");
    h.delete_and_wait("orders").await;
    servers.delete(&name, &Default::default()).await.unwrap();
    h.wait_server_gone(&name).await;
    h.finish().await;
}

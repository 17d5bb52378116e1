//! A change of what the operator connects to a server with takes effect on the next reconcile.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use silo_operator::crd::DatabaseServer;

use crate::harness::{Harness, eventually};

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

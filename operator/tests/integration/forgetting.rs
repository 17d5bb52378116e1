//! What the operator keeps per object (the phase gauge, admin connections, failure streaks) is
//! dropped when the object goes, whichever way it goes.

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use silo_operator::crd::DatabaseServer;

use crate::harness::{DatabaseFixture, Harness, eventually};

const READY: &str = "silo_databases{phase=\"Ready\"}";
const POSTGRES_CONNECTIONS: &str = "silo_admin_connections{engine=\"postgres\"}";

async fn metric_becomes(h: &Harness, sample: &str, value: f64) {
    eventually(&format!("{sample} to be {value}"), || async move {
        (h.metric(sample) == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_database_deleted_without_its_finalizer_leaves_no_phase_behind() {
    let h = Harness::start("silo-forget-db").await;
    h.create_shared("orphaned").await;
    h.wait_ready("orphaned").await;
    metric_becomes(&h, READY, 1.0).await;
    // Removed by hand: the cleanup never runs.
    h.databases()
        .patch(
            "orphaned",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    h.delete_and_wait("orphaned").await;
    metric_becomes(&h, READY, 0.0).await;
    h.finish().await;
}

#[tokio::test]
async fn a_deleted_server_leaves_no_admin_connection_behind() {
    let h = Harness::start("silo-forget-server").await;
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    let second = format!("second-{}", h.ns());
    let mut spec = serde_json::to_value(servers.get(&h.server).await.unwrap().spec).unwrap();
    spec["external"]["tls"] = json!({ "mode": "disable" });
    let server: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
        "metadata": { "name": second, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": spec,
    }))
    .unwrap();
    servers.create(&Default::default(), &server).await.unwrap();
    h.create(
        &DatabaseFixture::shared_on(&second)
            .owner("tenant")
            .build("tenant"),
    )
    .await;
    h.wait_ready("tenant").await;
    metric_becomes(&h, POSTGRES_CONNECTIONS, 2.0).await;

    h.delete_and_wait("tenant").await;
    servers
        .delete(&second, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_server_gone(&second).await;
    metric_becomes(&h, POSTGRES_CONNECTIONS, 1.0).await;
    h.finish().await;
}

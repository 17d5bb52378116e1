//! Servers the operator runs, on the local node: the pods really start (PostgreSQL 15
//! from the image `tests/images/build` made), the operator provisions on them, and the
//! credentials it delivers log in from a pod in the owner's namespace. Skipped, visibly,
//! without a node.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use silo_operator::crd::{DatabaseServer, Engine};

use crate::harness::{DatabaseFixture, Harness, eventually};

const POD_LIMIT: Duration = Duration::from_secs(120);

/// Waits until DatabaseServer `name` is Ready.
async fn wait_server_ready(h: &Harness, name: &str) {
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    eventually(&format!("DatabaseServer {name} to be Ready"), || {
        let servers = servers.clone();
        async move {
            let server = servers.get(name).await.ok()?;
            let conditions = server.status?.conditions;
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// Runs `psql "$DATABASE_URL"` in a pod of service `owner`, with the URL taken from the
/// credentials Secret by reference, and returns what the server says the login is.
async fn login_from_a_pod(h: &Harness, owner: &str, secret: &str) -> String {
    let pod_name = format!("{owner}-login");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": pod_name, "labels": { "silo.dev/service": owner } },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "psql", "image": silo_testenv::image("SILO_POSTGRES_IMAGE"),
                "command": ["bash", "-ec", "psql \"$DATABASE_URL\" -At -F @ -c 'select current_user, current_database()'"],
                "env": [{ "name": "DATABASE_URL", "valueFrom": { "secretKeyRef": { "name": secret, "key": "uri" } } }],
            }],
        },
    });
    silo_testenv::apply::<Pod>(&h.client, h.ns(), pod).await;
    silo_testenv::wait_pod_succeeded(&h.client, h.ns(), &pod_name, POD_LIMIT).await;
    silo_testenv::pod_logs(&h.client, h.ns(), &pod_name)
        .await
        .trim()
        .to_string()
}

#[tokio::test]
async fn a_managed_server_runs_and_its_database_logs_in_from_the_owners_pod() {
    let test = "a_managed_server_runs_and_its_database_logs_in_from_the_owners_pod";
    if silo_testenv::node_ip(test).is_none() {
        return;
    }
    let mut h = Harness::start("silo-running").await;
    h.use_local_images();
    let name = format!("running-{}", h.ns());
    let server: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
        "metadata": { "name": name, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": { "engine": "postgres", "managed": {
            "namespace": h.ns(), "version": "15", "storage": { "size": "64Mi" } } },
    }))
    .unwrap();
    Api::<DatabaseServer>::all(h.client.clone())
        .create(&PostParams::default(), &server)
        .await
        .unwrap();
    wait_server_ready(&h, &name).await;
    let sts = Api::<StatefulSet>::namespaced(h.client.clone(), h.ns())
        .get(&format!("silo-{name}"))
        .await
        .unwrap();
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(1));

    h.create(
        &DatabaseFixture::shared_on(&name)
            .owner("tenant")
            .build("tenant"),
    )
    .await;
    h.wait_ready("tenant").await;
    let secret = h.secret("tenant-db").await;
    let login = login_from_a_pod(&h, "tenant", "tenant-db").await;
    assert_eq!(
        login,
        format!("{}@{}", secret["username"], secret["database"]),
        "the delivered uri logs in as the owner's role, into its database"
    );
    h.delete_and_wait("tenant").await;
    Api::<DatabaseServer>::all(h.client.clone())
        .delete(&name, &Default::default())
        .await
        .unwrap();
    h.wait_server_gone(&name).await;
    h.finish().await;
}

#[tokio::test]
async fn a_dedicated_database_gets_a_running_server_of_its_own() {
    let test = "a_dedicated_database_gets_a_running_server_of_its_own";
    if silo_testenv::node_ip(test).is_none() {
        return;
    }
    let mut h = Harness::start("silo-running-dedicated").await;
    h.use_local_images();
    let db = DatabaseFixture::dedicated(Engine::Postgres)
        .owner("solo")
        .with(|spec| {
            let dedicated = spec.server.dedicated.as_mut().unwrap();
            dedicated.version = Some("15".into());
            dedicated.storage.size = "64Mi".into();
        })
        .build("solo");
    h.create(&db).await;
    h.wait_ready("solo").await;
    let sts = Api::<StatefulSet>::namespaced(h.client.clone(), h.ns())
        .get("solo-dbserver")
        .await
        .unwrap();
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(1));
    let secret = h.secret("solo-db").await;
    let login = login_from_a_pod(&h, "solo", "solo-db").await;
    assert_eq!(
        login,
        format!("{}@{}", secret["username"], secret["database"])
    );
    network_isolation_follows_the_policies_present(&h, "solo").await;
    h.finish().await;
}

/// `NetworkIsolated` of a Database on its own server is measured over the NetworkPolicies
/// present: a hand-written allow-all ingress policy in its namespace turns it False, naming
/// the policy, and removing the policy turns it True again. The policy's watch event is what
/// wakes the Database: each wait gives up long before the next check for drift.
async fn network_isolation_follows_the_policies_present(h: &Harness, name: &str) {
    let isolated = h.wait_condition(name, "NetworkIsolated", "True").await;
    let condition = network_isolated(&isolated);
    assert_eq!(condition.reason, "OnlyOwnerReaches", "{condition:?}");
    // A pod of nobody in particular; it is never scheduled, a pod object is enough for the
    // evaluation.
    silo_testenv::apply::<Pod>(
        &h.client,
        h.ns(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "stranger" },
            "spec": {
                "schedulerName": "silo-tests-never-scheduled",
                "containers": [{ "name": "c", "image": "registry.example.com/none:1" }],
            },
        }),
    )
    .await;
    let policies = Api::<NetworkPolicy>::namespaced(h.client.clone(), h.ns());
    let allow_all: NetworkPolicy = serde_json::from_value(json!({
        "metadata": { "name": "allow-everything-in" },
        "spec": { "podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"] },
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &allow_all)
        .await
        .unwrap();
    let opened = h.wait_condition(name, "NetworkIsolated", "False").await;
    let condition = network_isolated(&opened);
    assert_eq!(condition.reason, "OpenedByPolicy", "{condition:?}");
    assert!(
        condition.message.contains("allow-everything-in"),
        "{condition:?}"
    );
    policies
        .delete("allow-everything-in", &Default::default())
        .await
        .unwrap();
    h.wait_condition(name, "NetworkIsolated", "True").await;
}

fn network_isolated(db: &silo_operator::crd::Database) -> Condition {
    db.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "NetworkIsolated"))
        .cloned()
        .expect("NetworkIsolated is set")
}

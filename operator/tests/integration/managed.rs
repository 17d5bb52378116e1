//! Servers the operator runs (managed and dedicated): pods never start on the local control
//! plane, so these tests check the objects and that the status says what it waits for.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use silo_operator::crd::{DatabaseServer, DeletionPolicy, Engine};

use crate::harness::{DatabaseFixture, Harness, eventually, server_not_ready};

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

async fn get_eventually<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} to exist"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten() }
    })
    .await
}

#[tokio::test]
async fn a_dedicated_database_gets_its_own_server_objects_and_waits_for_them() {
    let h = Harness::start("silo-dedicated").await;
    let created = h
        .create(
            &DatabaseFixture::dedicated(Engine::Postgres)
                .owner("solo")
                .build("solo"),
        )
        .await;
    let uid = created.uid().unwrap();
    let db = h.wait_condition("solo", "ServerReady", "False").await;
    let server_ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ServerReady")
        .unwrap();
    assert_eq!(server_ready.reason, "WaitingForServer");
    assert!(
        server_ready.message.contains("0/1 ready"),
        "{}",
        server_ready.message
    );

    let client = h.client.clone();
    let ns = h.ns();
    let sts = get_eventually(
        &Api::<StatefulSet>::namespaced(client.clone(), ns),
        "solo-dbserver",
    )
    .await;
    let svc = get_eventually(
        &Api::<Service>::namespaced(client.clone(), ns),
        "solo-dbserver",
    )
    .await;
    let admin = get_eventually(
        &Api::<Secret>::namespaced(client.clone(), ns),
        "solo-dbserver-admin",
    )
    .await;
    let policy = get_eventually(
        &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        "solo-dbserver",
    )
    .await;
    for meta in [
        &sts.metadata,
        &svc.metadata,
        &admin.metadata,
        &policy.metadata,
    ] {
        assert!(
            owned_by(meta, &uid),
            "{:?} is not owned by the Database",
            meta.name
        );
    }
    let sts_spec = sts.spec.unwrap();
    let selector = sts_spec.selector.match_labels.unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().selector.as_ref(),
        Some(&selector)
    );
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let policy_spec = policy.spec.unwrap();
    assert_eq!(
        policy_spec.pod_selector.and_then(|s| s.match_labels),
        Some(selector)
    );
    let peers = policy_spec.ingress.unwrap()[0].from.clone().unwrap();
    let owners: Vec<String> = peers
        .iter()
        .filter_map(|p| {
            p.pod_selector
                .as_ref()?
                .match_labels
                .as_ref()?
                .get("silo.dev/service")
                .cloned()
        })
        .collect();
    assert_eq!(owners, ["solo"]);
    assert_eq!(
        peers.len(),
        2,
        "the owner and the operator's namespace, nothing else"
    );
    let admin_keys = admin.data.unwrap();
    assert!(admin_keys.contains_key("password") && admin_keys.contains_key("username"));
    assert!(sts_spec.volume_claim_templates.is_some());

    // Nothing exists on a server yet, so deletion releases at once.
    h.delete_and_wait("solo").await;
    h.finish().await;
}

/// Creates managed PostgreSQL server `name` (1Gi, workload in the test namespace) in the
/// test's scope; returns the server API and the created object.
async fn create_managed_server(h: &Harness, name: &str) -> (Api<DatabaseServer>, DatabaseServer) {
    let server: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
        "metadata": { "name": name, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": { "engine": "postgres", "managed": { "namespace": h.ns(), "storage": { "size": "1Gi" } } },
    }))
    .unwrap();
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    let created = servers
        .create(&PostParams::default(), &server)
        .await
        .unwrap();
    (servers, created)
}

#[tokio::test]
async fn a_managed_server_is_built_and_admits_the_owners_of_its_databases() {
    let h = Harness::start("silo-managed").await;
    let name = format!("managed-{}", h.ns());
    let (servers, created) = create_managed_server(&h, &name).await;
    let uid = created.uid().unwrap();

    let waiting = eventually("the managed server to report that it waits", || {
        let servers = servers.clone();
        let name = name.clone();
        async move {
            let server = servers.get(&name).await.ok()?;
            server.status?.conditions.into_iter().find(|c| {
                c.type_ == "Ready" && c.status == "False" && c.reason == "WaitingForServer"
            })
        }
    })
    .await;
    assert!(
        waiting.message.contains("ready replicas"),
        "{}",
        waiting.message
    );
    let workload = format!("silo-{name}");
    let ns = h.ns();
    let sts = get_eventually(
        &Api::<StatefulSet>::namespaced(h.client.clone(), ns),
        &workload,
    )
    .await;
    let admin = get_eventually(
        &Api::<Secret>::namespaced(h.client.clone(), ns),
        &format!("{workload}-admin"),
    )
    .await;
    assert!(owned_by(&sts.metadata, &uid) && owned_by(&admin.metadata, &uid));

    h.create(
        &DatabaseFixture::shared_on(&name)
            .owner("tenant")
            .build("tenant"),
    )
    .await;
    let db = h.wait_condition("tenant", "ServerReady", "False").await;
    let reason = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ServerReady")
        .unwrap()
        .reason;
    assert_eq!(reason, "WaitingForServer");
    let policies = Api::<NetworkPolicy>::namespaced(h.client.clone(), ns);
    eventually("the server's NetworkPolicy to admit the tenant", || {
        let policies = policies.clone();
        let workload = workload.clone();
        async move {
            let policy = policies.get(&workload).await.ok()?;
            let from = policy.spec?.ingress?.first()?.from.clone()?;
            from.iter()
                .any(|p| {
                    p.pod_selector
                        .as_ref()
                        .and_then(|s| s.match_labels.as_ref())
                        .and_then(|l| l.get("silo.dev/service"))
                        .is_some_and(|owner| owner == "tenant")
                })
                .then_some(())
        }
    })
    .await;
    h.delete_and_wait("tenant").await;
    servers
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_server_gone(&name).await;
    h.finish().await;
}

async fn patch_managed(servers: &Api<DatabaseServer>, name: &str, managed: serde_json::Value) {
    servers
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "managed": managed } })),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_managed_servers_volume_and_namespace_cannot_change_once_it_runs() {
    let h = Harness::start("silo-immutable").await;
    let name = format!("fixed-{}", h.ns());
    let (servers, _) = create_managed_server(&h, &name).await;
    let statefulsets = Api::<StatefulSet>::namespaced(h.client.clone(), h.ns());
    get_eventually(&statefulsets, &format!("silo-{name}")).await;
    server_not_ready(&h.client, &name, "WaitingForServer").await;

    patch_managed(&servers, &name, json!({ "storage": { "size": "2Gi" } })).await;
    let message = server_not_ready(&h.client, &name, "InvalidSpec")
        .await
        .message;
    assert!(
        message.starts_with("spec.managed.storage.size cannot change after creation (was 1Gi)"),
        "{message}"
    );
    let sts = statefulsets.get(&format!("silo-{name}")).await.unwrap();
    let claim = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    let requested = claim.spec.as_ref().unwrap().resources.as_ref().unwrap();
    assert_eq!(requested.requests.as_ref().unwrap()["storage"].0, "1Gi");

    // The same size written another way is no change: the server goes back to waiting for its pod.
    patch_managed(&servers, &name, json!({ "storage": { "size": "1024Mi" } })).await;
    server_not_ready(&h.client, &name, "WaitingForServer").await;

    patch_managed(&servers, &name, json!({ "namespace": "silo-elsewhere" })).await;
    let message = server_not_ready(&h.client, &name, "InvalidSpec")
        .await
        .message;
    assert!(
        message.starts_with(&format!(
            "spec.managed.namespace cannot change after creation (was {})",
            h.ns()
        )),
        "{message}"
    );
    let stored = servers.get(&name).await.unwrap();
    assert_eq!(
        stored.status.unwrap().workload_namespace.as_deref(),
        Some(h.ns())
    );

    servers
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_server_gone(&name).await;
    h.finish().await;
}

#[tokio::test]
async fn a_dedicated_databases_volume_size_cannot_change_once_its_server_exists() {
    let h = Harness::start("silo-dedicated-size").await;
    h.create(
        &DatabaseFixture::dedicated(Engine::Postgres)
            .owner("fixed")
            .build("fixed"),
    )
    .await;
    let statefulsets = Api::<StatefulSet>::namespaced(h.client.clone(), h.ns());
    get_eventually(&statefulsets, "fixed-dbserver").await;
    h.databases()
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "server": { "dedicated": { "storage": { "size": "3Gi" } } } } }),
            ),
        )
        .await
        .unwrap();
    let ready = eventually("Ready=False/InvalidSpec", || {
        let api = h.databases();
        async move {
            let db = api.get("fixed").await.ok()?;
            db.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.reason == "InvalidSpec")
        }
    })
    .await;
    assert!(
        ready.message.starts_with(
            "spec.server.dedicated.storage.size cannot change after creation (was 1Gi)"
        ),
        "{}",
        ready.message
    );
    h.delete_and_wait("fixed").await;
    h.finish().await;
}

/// Creates a dedicated PostgreSQL Database `name` with `policy` and waits for the claim the
/// StatefulSet controller makes for its data volume; returns the claims API.
async fn dedicated_with_claim(
    h: &Harness,
    name: &str,
    policy: DeletionPolicy,
) -> Api<PersistentVolumeClaim> {
    h.create(
        &DatabaseFixture::dedicated(Engine::Postgres)
            .owner(name)
            .deletion(policy)
            .build(name),
    )
    .await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), h.ns());
    get_eventually(&claims, &format!("data-{name}-dbserver-0")).await;
    claims
}

#[tokio::test]
async fn deleting_a_dedicated_database_with_delete_removes_its_volume_claim() {
    let h = Harness::start("silo-dedicated-delete").await;
    let claims = dedicated_with_claim(&h, "gone", DeletionPolicy::Delete).await;
    h.delete_and_wait("gone").await;
    eventually("the volume claim to be deleted", || {
        let claims = claims.clone();
        async move {
            match claims.get_opt("data-gone-dbserver-0").await.ok()? {
                None => Some(()),
                // Kept only until the pod using it has stopped (pvc-protection).
                Some(claim) => claim.metadata.deletion_timestamp.map(drop),
            }
        }
    })
    .await;
    let statefulsets = Api::<StatefulSet>::namespaced(h.client.clone(), h.ns());
    let sts = statefulsets.get_opt("gone-dbserver").await.unwrap();
    assert!(
        sts.is_none_or(|s| s.metadata.deletion_timestamp.is_some()),
        "the StatefulSet goes first, so it cannot make the claim again"
    );
    h.finish().await;
}

#[tokio::test]
async fn deleting_a_dedicated_database_with_retain_keeps_its_volume_claim_and_says_so() {
    let h = Harness::start("silo-dedicated-retain").await;
    let claims = dedicated_with_claim(&h, "kept", DeletionPolicy::Retain).await;
    h.delete_and_wait("kept").await;
    let claim = claims.get("data-kept-dbserver-0").await.unwrap();
    assert!(claim.metadata.deletion_timestamp.is_none());
    let events = Api::<Event>::namespaced(h.client.clone(), h.ns());
    let note = eventually("an Event saying the claim was kept", || {
        let events = events.clone();
        async move {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("kept"))
                .find_map(|e| e.note.filter(|n| n.contains("data-kept-dbserver-0")))
        }
    })
    .await;
    assert!(
        note.starts_with("deletionPolicy Retain: volume claim data-kept-dbserver-0"),
        "{note}"
    );
    claims
        .delete("data-kept-dbserver-0", &DeleteParams::default())
        .await
        .unwrap();
    h.finish().await;
}

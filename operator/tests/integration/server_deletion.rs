//! Deleting a `DatabaseServer` waits for the `Database`s on it, whose cleanup needs its admin
//! login; a `Database` whose server is already gone is released with a warning.

use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use silo_operator::crd::DatabaseServer;

use crate::harness::{
    DatabaseFixture, Harness, admin_connection, count_on_server, described_events, eventually,
    server_not_ready,
};

/// Events in `namespace` with `reason` about the object named `regarding`.
async fn events(client: &Client, namespace: &str, regarding: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
        })
        .collect()
}

#[tokio::test]
async fn a_server_in_use_stays_until_its_databases_have_dropped_their_data() {
    let h = Harness::start("silo-srvdel").await;
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    eventually("the server to carry the in-use finalizer", || {
        let servers = servers.clone();
        let name = h.server.clone();
        async move {
            let server = servers.get(&name).await.ok()?;
            server
                .finalizers()
                .iter()
                .any(|f| f == "silo.dev/server-in-use")
                .then_some(())
        }
    })
    .await;
    h.create_shared("orders").await;
    let status = h.wait_ready("orders").await.status.unwrap();
    let (database, role) = (status.database_name.unwrap(), status.role_name.unwrap());
    assert_eq!(count_on_server(&role, &database).await, (1, 1));

    servers
        .delete(&h.server, &DeleteParams::default())
        .await
        .unwrap();
    let in_use = server_not_ready(&h.client, &h.server, "InUse").await;
    assert!(
        in_use.message.contains(&format!("{}/orders", h.ns())),
        "{}",
        in_use.message
    );

    // Another Database on it is named as well; the Event was published once, on the transition.
    h.create_shared("billing").await;
    let billing = h.wait_ready("billing").await.status.unwrap();
    let both = eventually("the InUse message to name both Databases", || {
        let servers = servers.clone();
        let name = h.server.clone();
        async move {
            let server = servers.get(&name).await.ok()?;
            let ready = server
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            ready.message.contains("billing").then_some(ready)
        }
    })
    .await;
    assert!(both.message.contains("2 still do"), "{}", both.message);
    let uid = servers.get(&h.server).await.unwrap().uid().unwrap();
    let in_use_events = described_events(&h.client, "DatabaseServer", "", &h.server, &uid)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("InUse"))
        .count();
    assert_eq!(in_use_events, 1);

    h.delete_and_wait("orders").await;
    assert_eq!(
        count_on_server(&role, &database).await,
        (0, 0),
        "the Delete policy dropped the database and role through the server being deleted"
    );
    assert!(
        servers.get_opt(&h.server).await.unwrap().is_some(),
        "billing still uses the server"
    );
    h.delete_and_wait("billing").await;
    assert_eq!(
        count_on_server(
            billing.role_name.as_deref().unwrap(),
            billing.database_name.as_deref().unwrap()
        )
        .await,
        (0, 0)
    );
    h.wait_server_gone(&h.server).await;
    h.finish().await;
}

#[tokio::test]
async fn a_database_whose_server_is_already_gone_is_released_with_a_warning() {
    let h = Harness::start("silo-srvgone").await;
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    // Outside this controller's selector, so it gets no finalizer: like a server deleted under an
    // operator version without one.
    let unguarded = format!("unguarded-{}", h.ns());
    let spec = servers.get(&h.server).await.unwrap().spec;
    servers
        .create(
            &PostParams::default(),
            &DatabaseServer::new(&unguarded, spec),
        )
        .await
        .unwrap();
    h.create(
        &DatabaseFixture::shared_on(&unguarded)
            .owner("stranded")
            .build("stranded"),
    )
    .await;
    let status = h.wait_ready("stranded").await.status.unwrap();
    let (database, role) = (status.database_name.unwrap(), status.role_name.unwrap());
    servers
        .delete(&unguarded, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_server_gone(&unguarded).await;

    h.delete_and_wait("stranded").await;
    let warnings = events(&h.client, h.ns(), "stranded", "ServerGone").await;
    assert_eq!(warnings.len(), 1);
    let note = warnings[0].note.clone().unwrap_or_default();
    assert!(
        note.contains(&unguarded) && note.contains(&database) && note.contains(&role),
        "{note}"
    );
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    // Nothing could reach the server without its object: the data is still there.
    assert_eq!(count_on_server(&role, &database).await, (1, 1));
    let mut admin = admin_connection().await;
    for statement in [
        format!("DROP DATABASE \"{database}\" WITH (FORCE)"),
        format!("DROP ROLE \"{role}\""),
    ] {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }
    h.finish().await;
}

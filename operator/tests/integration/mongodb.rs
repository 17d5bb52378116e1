//! MongoDB provisioning against a real server; runs only when `SILO_MONGODB_URL` is set (an
//! admin login), and otherwise records a visible skip.

use std::str::FromStr;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use mongodb::bson::doc;
use serde_json::json;
use silo_operator::crd::{DatabaseServer, Engine};
use silo_operator::names::{MONGODB_DATABASE_LIMIT, derive_server_name};

use crate::harness::{DatabaseFixture, Harness, eventually};

async fn mongo_server(h: &Harness, url: &str) -> String {
    let options = mongodb::options::ClientOptions::parse(url).await.unwrap();
    let credential = options
        .credential
        .clone()
        .expect("SILO_MONGODB_URL carries an admin login");
    let host = options.hosts[0].to_string();
    let (host, port) = host.rsplit_once(':').unwrap_or((host.as_str(), "27017"));
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "mongo-admin", "namespace": h.ns() },
        "stringData": { "username": credential.username, "password": credential.password },
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.client.clone(), h.ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let name = format!("mongo-{}", h.ns());
    let server: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
        "metadata": { "name": name, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": { "engine": "mongodb", "external": {
            "host": host, "port": u16::from_str(port).unwrap(),
            "adminSecretRef": { "name": "mongo-admin", "namespace": h.ns() },
            "tls": { "mode": "disable" },
        } },
    }))
    .unwrap();
    Api::<DatabaseServer>::all(h.client.clone())
        .create(&PostParams::default(), &server)
        .await
        .unwrap();
    name
}

/// `Unauthorized` and `AuthenticationFailed`: what MongoDB answers a login without the right.
const REFUSALS: [i32; 2] = [13, 18];

fn error_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

async fn admin_client(url: &str) -> mongodb::Client {
    mongodb::Client::with_uri_str(url).await.unwrap()
}

/// The roles `user`@`db` holds, as `role@db`, sorted.
async fn roles_of(admin: &mongodb::Client, user: &str, db: &str) -> Vec<String> {
    let reply = admin
        .database(db)
        .run_command(doc! { "usersInfo": { "user": user, "db": db } })
        .await
        .unwrap();
    let users = reply.get_array("users").unwrap();
    let Some(found) = users.first().and_then(|u| u.as_document()) else {
        return Vec::new();
    };
    let mut roles: Vec<String> = found
        .get_array("roles")
        .unwrap()
        .iter()
        .filter_map(|r| r.as_document())
        .map(|r| {
            format!(
                "{}@{}",
                r.get_str("role").unwrap(),
                r.get_str("db").unwrap()
            )
        })
        .collect();
    roles.sort();
    roles
}

/// Whether `user`@`db` logs in with `password` (`connectionStatus` over its own session).
async fn logs_in(url: &str, user: &str, db: &str, password: &str) -> bool {
    let mut options = mongodb::options::ClientOptions::parse(url).await.unwrap();
    options.credential = Some(
        mongodb::options::Credential::builder()
            .username(user.to_string())
            .password(password.to_string())
            .source(db.to_string())
            .build(),
    );
    let client = mongodb::Client::with_options(options).unwrap();
    let ok = client
        .database(db)
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .is_ok();
    client.shutdown().await;
    ok
}

async fn delete_server(h: &Harness, server: &str) {
    Api::<DatabaseServer>::all(h.client.clone())
        .delete(server, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_server_gone(server).await;
}

#[tokio::test]
async fn mongodb_user_can_write_its_database_and_is_refused_by_others() {
    let Some(url) = silo_testenv::mongodb_url(
        "integration::mongodb::mongodb_user_can_write_its_database_and_is_refused_by_others",
    ) else {
        return;
    };
    let h = Harness::start("silo-mongo").await;
    let server = mongo_server(&h, &url).await;
    for owner in ["alpha", "beta"] {
        h.create(
            &DatabaseFixture::shared_on(&server)
                .engine(Engine::Mongodb)
                .owner(owner)
                .build(owner),
        )
        .await;
    }
    let alpha = h.wait_ready("alpha").await;
    h.wait_ready("beta").await;
    let alpha_secret = h.secret("alpha-db").await;
    let beta_secret = h.secret("beta-db").await;
    let alpha_db = alpha.status.unwrap().database_name.unwrap();

    let owner = mongodb::Client::with_uri_str(&alpha_secret["uri"])
        .await
        .unwrap();
    let items = owner
        .database(&alpha_db)
        .collection::<mongodb::bson::Document>("items");
    items
        .insert_one(doc! { "n": 1 })
        .await
        .expect("the owner can write its own database");
    let read = items.find_one(doc! { "n": 1 }).await.expect("and read it");
    assert_eq!(read.and_then(|d| d.get_i32("n").ok()), Some(1));

    let intruder = mongodb::Client::with_uri_str(&beta_secret["uri"])
        .await
        .unwrap();
    intruder
        .database(&beta_secret["database"])
        .run_command(doc! { "ping": 1 })
        .await
        .expect("beta's own login works");
    let refused = intruder
        .database(&alpha_db)
        .collection::<mongodb::bson::Document>("items")
        .find_one(doc! {})
        .await
        .expect_err("beta's user must not read alpha's database");
    assert!(
        error_code(&refused).is_some_and(|code| REFUSALS.contains(&code)),
        "the refusal is an authorization failure, not any error: {refused}"
    );
    for owner in ["alpha", "beta"] {
        h.delete_and_wait(owner).await;
    }
    delete_server(&h, &server).await;
    h.finish().await;
}

#[tokio::test]
async fn a_mongodb_user_silo_did_not_create_is_refused_and_left_alone() {
    let Some(url) = silo_testenv::mongodb_url(
        "integration::mongodb::a_mongodb_user_silo_did_not_create_is_refused_and_left_alone",
    ) else {
        return;
    };
    let h = Harness::start("silo-mongo-taken").await;
    let server = mongo_server(&h, &url).await;
    // Someone else's user and data under the names Silo would derive.
    let taken = derive_server_name(h.ns(), "taken", MONGODB_DATABASE_LIMIT);
    let admin = admin_client(&url).await;
    admin
        .database(&taken)
        .run_command(doc! { "createUser": &taken, "pwd": "someone-elses-password", "roles": [ { "role": "readWrite", "db": &taken } ] })
        .await
        .unwrap();
    admin
        .database(&taken)
        .collection::<mongodb::bson::Document>("theirs")
        .insert_one(doc! { "kept": true })
        .await
        .unwrap();
    h.create(
        &DatabaseFixture::shared_on(&server)
            .engine(Engine::Mongodb)
            .owner("taken")
            .build("taken"),
    )
    .await;
    let api = h.databases();
    eventually("Database taken to be refused with NameTaken", || {
        let api = api.clone();
        async move {
            let db = api.get("taken").await.ok()?;
            db.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "NameTaken")
                .then_some(())
        }
    })
    .await;
    assert!(
        logs_in(&url, &taken, &taken, "someone-elses-password").await,
        "the foreign user's password was not reset"
    );
    h.delete_and_wait("taken").await;
    assert_eq!(
        roles_of(&admin, &taken, &taken).await,
        [format!("readWrite@{taken}")]
    );
    let left = admin
        .database(&taken)
        .collection::<mongodb::bson::Document>("theirs")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(left, 1, "deleting the Database leaves someone else's data");
    admin
        .database(&taken)
        .run_command(doc! { "dropUser": &taken })
        .await
        .unwrap();
    admin.database(&taken).drop().await.unwrap();
    delete_server(&h, &server).await;
    h.finish().await;
}

#[tokio::test]
async fn the_access_check_keeps_built_in_roles_and_revokes_a_grant_on_the_database() {
    let Some(url) = silo_testenv::mongodb_url(
        "integration::mongodb::the_access_check_keeps_built_in_roles_and_revokes_a_grant_on_the_database",
    ) else {
        return;
    };
    let h = Harness::start("silo-mongo-roles").await;
    let server = mongo_server(&h, &url).await;
    let database = derive_server_name(h.ns(), "orders", MONGODB_DATABASE_LIMIT);
    let suffix = silo_testenv::unique_suffix();
    let (monitor, intruder) = (format!("monitor_{suffix}"), format!("intruder_{suffix}"));
    let admin = admin_client(&url).await;
    for (user, roles) in [
        (
            &monitor,
            vec![
                doc! { "role": "clusterMonitor", "db": "admin" },
                doc! { "role": "clusterManager", "db": "admin" },
            ],
        ),
        (
            &intruder,
            vec![
                doc! { "role": "clusterMonitor", "db": "admin" },
                doc! { "role": "read", "db": &database },
            ],
        ),
    ] {
        admin
            .database("admin")
            .run_command(doc! { "createUser": user, "pwd": "monitoring-password", "roles": roles })
            .await
            .unwrap();
    }
    h.create(
        &DatabaseFixture::shared_on(&server)
            .engine(Engine::Mongodb)
            .owner("orders")
            .build("orders"),
    )
    .await;
    h.wait_condition("orders", "AccessVerified", "True").await;
    h.wait_ready("orders").await;
    assert_eq!(
        roles_of(&admin, &monitor, "admin").await,
        ["clusterManager@admin", "clusterMonitor@admin"],
        "monitoring and management roles are never revoked"
    );
    assert_eq!(
        roles_of(&admin, &intruder, "admin").await,
        ["clusterMonitor@admin"],
        "read on the service's database is revoked, the built-in role kept"
    );
    for user in [&monitor, &intruder] {
        admin
            .database("admin")
            .run_command(doc! { "dropUser": user })
            .await
            .unwrap();
    }
    h.delete_and_wait("orders").await;
    delete_server(&h, &server).await;
    h.finish().await;
}

//! MongoDB provisioning; runs only when `SILO_MONGODB_URL` is set.

use std::str::FromStr;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use mongodb::bson::doc;
use serde_json::json;
use silo_operator::crd::{DatabaseServer, Engine};

use crate::harness::{DatabaseFixture, Harness};

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

    let client = mongodb::Client::with_uri_str(&alpha_secret["uri"])
        .await
        .unwrap();
    client
        .database(&alpha_db)
        .collection::<mongodb::bson::Document>("items")
        .insert_one(doc! { "n": 1 })
        .await
        .expect("the owner can write its own database");

    let intruder = mongodb::Client::with_uri_str(&beta_secret["uri"])
        .await
        .unwrap();
    let refused = intruder
        .database(&alpha_db)
        .collection::<mongodb::bson::Document>("items")
        .find_one(doc! {})
        .await;
    assert!(
        refused.is_err(),
        "beta's user must not read alpha's database"
    );
    for owner in ["alpha", "beta"] {
        h.delete_and_wait(owner).await;
    }
    Api::<DatabaseServer>::all(h.client.clone())
        .delete(&server, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_server_gone(&server).await;
    h.finish().await;
}

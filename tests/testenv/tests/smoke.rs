//! Smoke tests: every component of the local environment is real and reachable.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use silo_testenv::{TestDatabase, TestNamespace, kube_client, nats_client, unique_suffix};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[tokio::test]
async fn api_server_serves_namespaces_crds_and_custom_objects() {
    let client = kube_client().await;
    let namespace = TestNamespace::create(&client, "smoke").await;
    let fetched = Api::<Namespace>::all(client.clone())
        .get(namespace.name())
        .await
        .expect("the namespace just created can be read back");
    assert_eq!(fetched.metadata.name.as_deref(), Some(namespace.name()));

    // A CRD of its own, so the smoke test does not depend on the operator's.
    let group = format!("smoke{}.silo.dev", unique_suffix());
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("widgets.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": { "type": "object", "properties": { "size": { "type": "integer" } } },
                        "status": { "type": "object", "properties": { "phase": { "type": "string" } } }
                    }
                }}
            }]
        }
    }))
    .expect("CRD literal is valid");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        &format!("widgets.{group}"),
        &PatchParams::apply("silo-smoke").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied by server-side apply");

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets =
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace.name(), &resource);
    let mut widget = DynamicObject::new("first", &resource);
    widget.data = serde_json::json!({ "spec": { "size": 3 } });

    // The CRD becomes servable shortly after it is established.
    let created = {
        let mut attempt = 0;
        loop {
            match widgets.create(&PostParams::default(), &widget).await {
                Ok(created) => break created,
                Err(e) if attempt < 100 => {
                    attempt += 1;
                    tracing::debug!("CRD not served yet: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("custom object was never accepted: {e}"),
            }
        }
    };
    assert_eq!(created.data["spec"]["size"], 3);

    // Status through its subresource, by server-side apply, as the operator will write it.
    let status_patch = serde_json::json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "status": { "phase": "Ready" }
    });
    widgets
        .patch_status(
            "first",
            &PatchParams::apply("silo-smoke").force(),
            &Patch::Apply(&status_patch),
        )
        .await
        .expect("status applied");
    let read = widgets.get("first").await.expect("custom object readable");
    assert_eq!(read.data["status"]["phase"], "Ready");

    crds.delete(&format!("widgets.{group}"), &Default::default())
        .await
        .expect("CRD deleted");
}

#[tokio::test]
async fn postgres_stores_and_returns_a_row() {
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    sqlx::query("CREATE TABLE greeting (id int PRIMARY KEY, text text NOT NULL)")
        .execute(&pool)
        .await
        .expect("table created");
    sqlx::query("INSERT INTO greeting VALUES (1, $1)")
        .bind("hello from silo")
        .execute(&pool)
        .await
        .expect("row inserted");
    let (text,): (String,) = sqlx::query_as("SELECT text FROM greeting WHERE id = 1")
        .fetch_one(&pool)
        .await
        .expect("row read");
    assert_eq!(text, "hello from silo");
    let (version,): (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&pool)
        .await
        .expect("server version");
    assert!(
        version.starts_with("15"),
        "expected PostgreSQL 15, got {version}"
    );
    pool.close().await;
}

#[tokio::test]
async fn jetstream_publishes_and_delivers_a_message() {
    let client = nats_client().await;
    let jetstream = async_nats::jetstream::new(client);
    let name = format!("SMOKE_{}", unique_suffix());
    let subject = format!("smoke.{name}.hello");
    let stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("smoke.{name}.>")],
            ..Default::default()
        })
        .await
        .expect("stream created");
    jetstream
        .publish(subject.clone(), "ping".into())
        .await
        .expect("published")
        .await
        .expect("acknowledged by JetStream");

    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("smoke".into()),
            ..Default::default()
        })
        .await
        .expect("consumer created");
    let mut messages = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch started");
    let message = messages
        .next()
        .await
        .expect("one message delivered")
        .expect("message ok");
    assert_eq!(message.subject.as_str(), subject);
    assert_eq!(&message.payload[..], b"ping");
    message.ack().await.expect("acked");
    jetstream
        .delete_stream(&name)
        .await
        .expect("stream deleted");
}

/// The skip log `tests/run-tests` lists and counts after the suite.
fn runner_skip_log() -> PathBuf {
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("../run-tests");
    let text = std::fs::read_to_string(&runner).expect("tests/run-tests exists");
    assert!(
        text.contains("cat \"$SILO_ENV_DIR/skipped.log\""),
        "tests/run-tests lists $SILO_ENV_DIR/skipped.log"
    );
    PathBuf::from(silo_testenv::require("SILO_ENV_DIR")).join("skipped.log")
}

/// How many skips of `test` `log` holds.
fn skips_of(log: &Path, test: &str) -> usize {
    let prefix = format!("SKIPPED {test}: ");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn mongodb_is_used_when_configured_and_the_skip_is_recorded_otherwise() {
    const TEST: &str = "testenv::smoke::mongodb_url";
    let log = runner_skip_log();
    let before = skips_of(&log, TEST);
    match silo_testenv::mongodb_url(TEST) {
        Some(url) => {
            assert_eq!(skips_of(&log, TEST), before, "nothing skipped with MongoDB");
            let client = mongodb::Client::with_uri_str(&url)
                .await
                .expect("SILO_MONGODB_URL parses");
            let status = client
                .database("admin")
                .run_command(mongodb::bson::doc! { "connectionStatus": 1 })
                .await
                .expect("the MongoDB server answers");
            let users = status
                .get_document("authInfo")
                .and_then(|info| info.get_array("authenticatedUsers"))
                .expect("connectionStatus reports the logins");
            assert!(
                !users.is_empty(),
                "the login in SILO_MONGODB_URL is accepted"
            );
        }
        None => assert_eq!(
            skips_of(&log, TEST),
            before + 1,
            "the skip is recorded once in the log tests/run-tests reads"
        ),
    }
}

//! Names the API server accepts are accepted by the operator, and the other way round.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use silo_operator::validate;

use crate::harness::{DatabaseFixture, Harness};

/// Whether the API server accepts a Secret called `name` (a dry run: nothing is stored).
async fn api_server_accepts_secret(client: &kube::Client, namespace: &str, name: &str) -> bool {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name },
    }))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&dry_run, &secret)
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 422 => false,
        Err(e) => panic!("unexpected answer for {name:?}: {e}"),
    }
}

#[tokio::test]
async fn the_secret_name_check_agrees_with_the_api_server() {
    let client = silo_testenv::kube_client().await;
    let ns = silo_testenv::TestNamespace::create(&client, "silo-names").await;
    let candidates = [
        "a".to_string(),
        "users-db".to_string(),
        "a".repeat(64),
        format!("{}.{}", "a".repeat(100), "b".repeat(100)),
        "a".repeat(253),
        "a".repeat(254),
        "a..b".to_string(),
        "-a".to_string(),
        "a-".to_string(),
        ".a".to_string(),
        "a.".to_string(),
        "Users".to_string(),
        "users_db".to_string(),
        "a.-b".to_string(),
        "ünicode".to_string(),
    ];
    for name in candidates {
        let db = DatabaseFixture::shared_on("pg")
            .with(|spec| spec.credentials.secret_name = Some(name.clone()))
            .build("users");
        let operator_accepts = validate::database(&db).is_ok();
        let api_accepts = api_server_accepts_secret(&client, ns.name(), &name).await;
        assert_eq!(operator_accepts, api_accepts, "{name:?}");
    }
}

#[tokio::test]
async fn a_database_with_a_79_character_name_becomes_ready() {
    let h = Harness::start("silo-longname").await;
    let name = format!("orders-archive-{}", "x".repeat(64));
    assert_eq!(name.len(), 79);
    h.create(
        &DatabaseFixture::shared_on(&h.server)
            .owner("orders")
            .build(&name),
    )
    .await;
    let db = h.wait_ready(&name).await;
    let status = db.status.unwrap();
    assert_eq!(
        status.secret_name.as_deref(),
        Some(format!("{name}-db").as_str())
    );
    h.finish().await;
}

#[tokio::test]
async fn an_empty_or_malformed_owner_is_refused_by_the_schema_naming_the_owner() {
    let client = silo_testenv::kube_client().await;
    crate::harness::install_crds(&client).await;
    let ns = silo_testenv::TestNamespace::create(&client, "silo-owner").await;
    let databases = Api::<silo_operator::crd::Database>::namespaced(client.clone(), ns.name());
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for (owner, complaint) in [
        ("", "spec.owner in body should be at least 1 chars long"),
        ("User Service", "spec.owner in body should match"),
        (
            &"a".repeat(64),
            "spec.owner in body should be at most 63 chars long",
        ),
    ] {
        let db = DatabaseFixture::shared_on("pg").owner(owner).build("users");
        match databases.create(&dry_run, &db).await {
            Err(kube::Error::Api(status)) if status.code == 422 => {
                assert!(
                    status.message.contains(complaint),
                    "{owner:?}: {}",
                    status.message
                );
            }
            other => panic!("{owner:?}: expected 422, got {other:?}"),
        }
    }
    let valid = DatabaseFixture::shared_on("pg")
        .owner("user-service")
        .build("users");
    databases.create(&dry_run, &valid).await.unwrap();
}

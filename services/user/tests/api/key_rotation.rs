//! The documented signing-key rotation, with two user-service replicas on one database and a
//! verifier of another service: add a key → every replica signs with it (no restart) → retire
//! the old one → nobody accepts its tokens any more.

use crate::helpers::{registration, test_config};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use silo_kit::auth::{AuthError, RefreshPolicy, TokenVerifier};
use silo_kit::events::EventNamespace;
use silo_testenv::TestDatabase;
use std::time::Duration;
use user_service::Application;

/// Well beyond the reload interval and TTL used here: only a missing reload makes it run out.
const PATIENCE: Duration = Duration::from_secs(30);

async fn replica(database: &TestDatabase, namespace: &EventNamespace) -> Application {
    let config = user_service::UserConfig {
        keys_reload: Duration::from_millis(100),
        ..test_config(database, namespace)
    };
    Application::build(config)
        .await
        .expect("user-service starts")
}

fn url(app: &Application, path: &str) -> String {
    format!("http://{}{path}", app.address())
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&json).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

async fn login(app: &Application, username: &str) -> String {
    let body = json!({"username": username, "password": format!("password-{username}")});
    let response = reqwest::Client::new()
        .post(url(app, "/api/users/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

async fn published_kids(app: &Application) -> Vec<String> {
    let jwks: Value = reqwest::get(url(app, "/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Polls until `check` holds, failing after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_key_added_and_an_old_one_retired_take_effect_on_every_replica_without_a_restart() {
    let database = TestDatabase::create().await;
    let namespace =
        EventNamespace::prefixed(format!("u{}", silo_testenv::unique_suffix())).unwrap();
    let (a, b) = (
        replica(&database, &namespace).await,
        replica(&database, &namespace).await,
    );
    let response = reqwest::Client::new()
        .post(url(&a, "/api/users/register"))
        .json(&registration("rotor"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    let me = format!("/api/users/{}", user["id"].as_str().unwrap());
    let old_token = login(&a, "rotor").await;
    let old_kid = kid_of(&old_token);
    // Another service's verifier, trusting fetched keys for 200 ms.
    let policy = RefreshPolicy {
        ttl: Duration::from_millis(200),
        min_interval: Duration::from_millis(50),
    };
    let elsewhere = TokenVerifier::remote_with_policy(&url(&a, ""), policy);
    elsewhere
        .verify(&old_token)
        .await
        .expect("the old key verifies");

    // 1. Add a key: the newest signs, on both replicas, once they have read it.
    // (What `user-service signing-key add` runs.)
    let new_kid = user_service::keys::add_key(a.pool()).await.unwrap();
    for app in [&a, &b] {
        eventually("a replica did not sign with the added key", || async {
            kid_of(&login(app, "rotor").await) == new_kid
        })
        .await;
        assert!(
            published_kids(app).await.contains(&old_kid),
            "the old key is still published"
        );
    }
    let new_token = login(&b, "rotor").await;
    elsewhere
        .verify(&new_token)
        .await
        .expect("the new key verifies elsewhere");
    elsewhere
        .verify(&old_token)
        .await
        .expect("tokens of the old key verify until it is retired");

    // 2. Retire the old key (after the longest token lifetime): nobody accepts it any more.
    // (What `user-service signing-key retire <kid>` runs; the newest key cannot be retired.)
    let refused = user_service::keys::retire_key(a.pool(), &new_kid).await;
    assert!(
        matches!(refused, Err(user_service::keys::RetireError::Current(_))),
        "{refused:?}"
    );
    user_service::keys::retire_key(a.pool(), &old_kid)
        .await
        .unwrap();
    for app in [&a, &b] {
        eventually("a replica still publishes the retired key", || async {
            !published_kids(app).await.contains(&old_kid)
        })
        .await;
        let me = reqwest::Client::new()
            .get(url(app, &me))
            .bearer_auth(&old_token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.status(),
            StatusCode::UNAUTHORIZED,
            "a replica accepts the retired key"
        );
    }
    eventually("another service still accepts the retired key", || async {
        matches!(
            elsewhere.verify(&old_token).await,
            Err(AuthError::UnknownKey)
        )
    })
    .await;
    elsewhere
        .verify(&new_token)
        .await
        .expect("the new key still verifies");
    a.stop().await;
    b.stop().await;
}

//! `POST /api/users/login` and `GET /.well-known/jwks.json`.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use silo_kit::auth::{Jwks, TokenVerifier};

#[tokio::test]
async fn login_by_username_returns_a_token_that_verifies_against_the_jwks() {
    let app = TestApp::spawn().await;
    let user = app.register("lena").await;
    let response = app
        .post_json(
            "/api/users/login",
            &json!({"username": "lena", "password": "password-lena"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], user["id"]);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expiresAt"].as_str().unwrap()).unwrap();
    let lifetime = expires_at.timestamp() - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&lifetime), "token lives {lifetime}s");

    // Another service verifies with the published keys only.
    let verifier = TokenVerifier::remote(&app.address);
    let claims = verifier
        .verify(body["token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.sub.to_string(), user["id"].as_str().unwrap());
    assert_eq!(claims.roles, vec!["user".to_string()]);
    assert_eq!(claims.exp, expires_at.timestamp());
}

#[tokio::test]
async fn login_by_email_works_case_insensitively() {
    let app = TestApp::spawn().await;
    app.register("mona").await;
    let response = app
        .post_json(
            "/api/users/login",
            &json!({"username": "MONA@example.com", "password": "password-mona"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = TestApp::spawn().await;
    app.register("nina").await;
    let wrong_password = app
        .post_json(
            "/api/users/login",
            &json!({"username": "nina", "password": "not-her-password"}),
        )
        .await;
    let wrong_error = assert_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
    )
    .await;
    let unknown_user = app
        .post_json(
            "/api/users/login",
            &json!({"username": "nobody", "password": "password-nina"}),
        )
        .await;
    let unknown_error = assert_problem(
        unknown_user,
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
    )
    .await;
    assert_eq!(wrong_error, unknown_error);
}

#[tokio::test]
async fn login_with_missing_or_unknown_fields_is_a_400() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json("/api/users/login", &json!({"username": "x"}))
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(fields_of(&problem), ["password"]);
    let response = app
        .post_json(
            "/api/users/login",
            &json!({"username": "x", "password": "y", "remember": true}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(fields_of(&problem), ["remember"]);
}

#[tokio::test]
async fn jwks_publishes_an_ed25519_key_without_private_parts() {
    let app = TestApp::spawn().await;
    let response = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let raw: Value = response.json().await.unwrap();
    let jwks: Jwks = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].kty, "OKP");
    assert_eq!(jwks.keys[0].crv, "Ed25519");
    assert!(
        raw["keys"][0].get("d").is_none(),
        "private key must not be published"
    );
}

#[tokio::test]
async fn signing_key_survives_a_restart_so_issued_tokens_stay_valid() {
    let app = TestApp::spawn().await;
    let (id, token) = app.signed_up("olga").await;
    let (database, namespace) = app.stop().await;
    let restarted = TestApp::spawn_on(database, namespace).await;
    let response = restarted
        .get(&format!("/api/users/{id}"), Some(&token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

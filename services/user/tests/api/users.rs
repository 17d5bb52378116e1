//! `GET`/`PATCH /api/users/{id}` and `GET /api/users/{id}/exists`.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use silo_kit::auth::SigningKey;
use silo_kit::events::UserEmailChanged;
use uuid::Uuid;

#[tokio::test]
async fn user_reads_their_own_profile() {
    let app = TestApp::spawn().await;
    let (id, token) = app.signed_up("pete").await;
    let response = app.get(&format!("/api/users/{id}"), Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], "pete");
}

#[tokio::test]
async fn missing_token_is_a_401() {
    let app = TestApp::spawn().await;
    let (id, _) = app.signed_up("quin").await;
    let response = app.get(&format!("/api/users/{id}"), None).await;
    assert_eq!(challenge_of(&response), "Bearer realm=\"silo\"");
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn expired_token_is_a_401() {
    let app = TestApp::spawn().await;
    let (id, _) = app.signed_up("rita").await;
    let expired = token_with(&app.signing_key().await, id, &["user"], -3600);
    let response = app.get(&format!("/api/users/{id}"), Some(&expired)).await;
    assert_eq!(
        challenge_of(&response),
        "Bearer realm=\"silo\", error=\"invalid_token\", error_description=\"the token has expired\""
    );
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-token").await;
    assert_eq!(problem["detail"], "the token has expired");
}

#[tokio::test]
async fn token_signed_by_another_key_is_a_401() {
    let app = TestApp::spawn().await;
    let (id, _) = app.signed_up("sam").await;
    let forged = token_with(&SigningKey::generate(), id, &["admin"], 3600);
    let response = app.get(&format!("/api/users/{id}"), Some(&forged)).await;
    assert!(challenge_of(&response).contains("error=\"invalid_token\""));
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-token").await;
}

#[tokio::test]
async fn tampered_token_is_a_401() {
    let app = TestApp::spawn().await;
    let (id, token) = app.signed_up("tina").await;
    // Swap the payload for one claiming the admin role; the signature no longer matches.
    let mut parts: Vec<&str> = token.split('.').collect();
    let now = chrono::Utc::now().timestamp();
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({"sub": id, "roles": ["admin"], "exp": now + 3600, "iat": now, "iss": "silo-user-service"}).to_string(),
    );
    parts[1] = &payload;
    let tampered = parts.join(".");
    let response = app.get(&format!("/api/users/{id}"), Some(&tampered)).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-token").await;
    let response = app
        .get(&format!("/api/users/{id}"), Some("not-a-jwt"))
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-token").await;
}

#[tokio::test]
async fn another_users_profile_is_forbidden() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_up("uma").await;
    let (other, _) = app.signed_up("vera").await;
    let response = app.get(&format!("/api/users/{other}"), Some(&token)).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .patch(
            &format!("/api/users/{other}"),
            Some(&token),
            &json!({"fullName": "Hijacked"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn admin_reads_any_profile_and_gets_404_for_unknown_ids() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.signed_up("walt").await;
    app.make_admin(admin).await;
    let token = app.login("walt").await;
    let (other, _) = app.signed_up("xena").await;
    let response = app.get(&format!("/api/users/{other}"), Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .get(&format!("/api/users/{}", Uuid::new_v4()), Some(&token))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn malformed_user_id_is_a_400() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_up("yuri").await;
    let response = app.get("/api/users/not-a-uuid", Some(&token)).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(
        problem["errors"],
        json!([{"field": "id", "message": "the path parameter id must be a UUID"}])
    );
}

#[tokio::test]
async fn exists_answers_any_authenticated_caller() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_up("zoe").await;
    let (other, _) = app.signed_up("abel").await;
    let response = app
        .get(&format!("/api/users/{other}/exists"), Some(&token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"exists": true})
    );
    let response = app
        .get(
            &format!("/api/users/{}/exists", Uuid::new_v4()),
            Some(&token),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = app.get(&format!("/api/users/{other}/exists"), None).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn changing_the_email_publishes_user_email_changed() {
    let app = TestApp::spawn().await;
    let (id, token) = app.signed_up("bert").await;
    let response = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&token),
            &json!({"email": "bert@new.example"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "bert@new.example");
    let events = app.published_events(2).await;
    let changed: UserEmailChanged = events[1].decode().unwrap();
    assert_eq!(changed.user_id, id);
    assert_eq!(changed.old_email, "bert@example.com");
    assert_eq!(changed.new_email, "bert@new.example");
}

#[tokio::test]
async fn changing_only_the_name_publishes_no_email_event() {
    let app = TestApp::spawn().await;
    let (id, token) = app.signed_up("cleo").await;
    let response = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&token),
            &json!({"fullName": "Cleo Renamed"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["fullName"],
        "Cleo Renamed"
    );
    let types: Vec<String> = sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(types, vec!["UserRegistered".to_string()]);
}

#[tokio::test]
async fn admin_may_change_another_users_email() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.signed_up("dina").await;
    app.make_admin(admin).await;
    let token = app.login("dina").await;
    let (other, _) = app.signed_up("emil").await;
    let response = app
        .patch(
            &format!("/api/users/{other}"),
            Some(&token),
            &json!({"email": "emil@x.example"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn patch_client_errors_explain_themselves() {
    let app = TestApp::spawn().await;
    let (id, token) = app.signed_up("fred").await;
    app.register("gwen").await;
    let path = format!("/api/users/{id}");
    let problem = assert_problem(
        app.patch(&path, Some(&token), &json!({"email": "GWEN@example.com"}))
            .await,
        StatusCode::CONFLICT,
        "email-taken",
    )
    .await;
    assert_eq!(fields_of(&problem), ["email"]);
    let problem = assert_problem(
        app.patch(
            &path,
            Some(&token),
            &json!({"email": "nope", "fullName": ""}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "validation-failed",
    )
    .await;
    assert_eq!(fields_of(&problem), ["email", "fullName"]);
    assert_problem(
        app.patch(&path, Some(&token), &json!({})).await,
        StatusCode::BAD_REQUEST,
        "nothing-to-update",
    )
    .await;
    let problem = assert_problem(
        app.patch(&path, Some(&token), &json!({"username": "renamed"}))
            .await,
        StatusCode::BAD_REQUEST,
        "validation-failed",
    )
    .await;
    assert_eq!(fields_of(&problem), ["username"]);
    assert_problem(
        app.patch(
            &format!("/api/users/{}", Uuid::new_v4()),
            Some(&token),
            &json!({"fullName": "X"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.patch(&path, None, &json!({"fullName": "X"})).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    // Nothing changed and no email event was written.
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(email, "fred@example.com");
    let changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'UserEmailChanged'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(changes, 0);
}

#[tokio::test]
async fn admin_patching_an_unknown_user_gets_404() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.signed_up("hugo").await;
    app.make_admin(admin).await;
    let token = app.login("hugo").await;
    let response = app
        .patch(
            &format!("/api/users/{}", Uuid::new_v4()),
            Some(&token),
            &json!({"fullName": "X"}),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

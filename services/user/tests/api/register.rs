//! `POST /api/users/register`.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use silo_kit::events::UserRegistered;

#[tokio::test]
async fn registration_returns_201_with_the_user_and_its_location() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json("/api/users/register", &registration("alice"))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/users/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(body["username"], "alice");
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["fullName"], "alice Example");
    assert_eq!(body["roles"], json!(["user"]));
    assert!(chrono::DateTime::parse_from_rfc3339(body["createdAt"].as_str().unwrap()).is_ok());
    assert!(body.get("password").is_none() && body.get("passwordHash").is_none());
}

#[tokio::test]
async fn password_is_stored_as_an_argon2id_hash() {
    let app = TestApp::spawn().await;
    app.register("bob").await;
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("password-bob"));
}

#[tokio::test]
async fn registration_publishes_user_registered() {
    let app = TestApp::spawn().await;
    let user = app.register("carol").await;
    let events = app.published_events(1).await;
    assert_eq!(events.len(), 1);
    let event: UserRegistered = events[0].decode().unwrap();
    assert_eq!(event.user_id.to_string(), user["id"].as_str().unwrap());
    assert_eq!(event.email, "carol@example.com");
    assert_eq!(event.full_name, "carol Example");
}

#[tokio::test]
async fn correlation_id_of_the_request_reaches_the_event() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/users/register"))
        .header("X-Correlation-ID", "trace-register-1")
        .json(&registration("dora"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-correlation-id"], "trace-register-1");
    let events = app.published_events(1).await;
    assert_eq!(events[0].correlation_id, "trace-register-1");
}

#[tokio::test]
async fn taken_username_is_a_409_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.register("erin").await;
    let mut body = registration("ERIN");
    body["email"] = json!("other@example.com");
    let problem = assert_problem(
        app.post_json("/api/users/register", &body).await,
        StatusCode::CONFLICT,
        "username-taken",
    )
    .await;
    assert_eq!(fields_of(&problem), ["username"]);
}

#[tokio::test]
async fn taken_email_is_a_409_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.register("frank").await;
    let mut body = registration("frank2");
    body["email"] = json!("FRANK@example.com");
    let problem = assert_problem(
        app.post_json("/api/users/register", &body).await,
        StatusCode::CONFLICT,
        "email-taken",
    )
    .await;
    assert_eq!(fields_of(&problem), ["email"]);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 1, "nothing half-written");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 1, "no event for the rejected registration");
}

#[tokio::test]
async fn invalid_fields_are_400s_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        ("username", json!("ab")),
        ("username", json!("a".repeat(51))),
        ("username", json!("bad name")),
        ("email", json!("not-an-email")),
        ("email", json!("a@b")),
        ("password", json!("short")),
        ("password", json!("p".repeat(129))),
        ("fullName", json!("   ")),
    ];
    for (field, value) in cases {
        let mut body = registration("gina");
        body[field] = value.clone();
        let problem = assert_problem(
            app.post_json("/api/users/register", &body).await,
            StatusCode::BAD_REQUEST,
            "validation-failed",
        )
        .await;
        assert_eq!(fields_of(&problem), [field], "{field} = {value}");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = TestApp::spawn().await;
    let body = json!({
        "username": "a b",
        "email": "not-an-email",
        "password": "short",
        "fullName": 42,
    });
    let problem = assert_problem(
        app.post_json("/api/users/register", &body).await,
        StatusCode::BAD_REQUEST,
        "validation-failed",
    )
    .await;
    assert_eq!(
        problem["errors"],
        json!([
            {"field": "username", "message": "username may contain only letters, digits, '_', '.' and '-'"},
            {"field": "email", "message": "email is not a valid address"},
            {"field": "password", "message": "password must be 8 to 128 characters long"},
            {"field": "fullName", "message": "fullName must be a string"},
        ])
    );
    assert_eq!(
        problem["detail"],
        "The request has 4 invalid fields: username, email, password, fullName."
    );
}

#[tokio::test]
async fn a_json_array_is_not_a_registration() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/api/users/register",
            &json!(["hank", "hank@example.com", "password-hank", "Hank"]),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "body-not-object").await;
    assert_eq!(
        problem["detail"],
        "The request body must be a JSON object, not an array."
    );
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = TestApp::spawn().await;
    let response = app
        .post_raw(
            "/api/users/register",
            "application/json",
            "{\"username\":".into(),
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-json").await;
}

#[tokio::test]
async fn unknown_field_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let mut body = registration("hank");
    body["roles"] = json!(["admin"]);
    let problem = assert_problem(
        app.post_json("/api/users/register", &body).await,
        StatusCode::BAD_REQUEST,
        "validation-failed",
    )
    .await;
    assert_eq!(fields_of(&problem), ["roles"]);
}

#[tokio::test]
async fn missing_field_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let mut body = registration("ivan");
    body.as_object_mut().unwrap().remove("password");
    let problem = assert_problem(
        app.post_json("/api/users/register", &body).await,
        StatusCode::BAD_REQUEST,
        "validation-failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["message"], "password is required");
    assert_eq!(fields_of(&problem), ["password"]);
}

#[tokio::test]
async fn non_json_content_type_is_a_415() {
    let app = TestApp::spawn().await;
    let response = app
        .post_raw(
            "/api/users/register",
            "text/plain",
            registration("jane").to_string(),
        )
        .await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
}

#[tokio::test]
async fn oversized_body_is_a_413() {
    let app = TestApp::spawn().await;
    let mut body = registration("kate");
    body["fullName"] = json!("k".repeat(100 * 1024));
    let response = app.post_json("/api/users/register", &body).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
}

//! Start-up and operational endpoints.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use silo_kit::config::Secret;
use silo_kit::events::EventNamespace;
use std::process::Command;
use std::time::Duration;
use user_service::{Application, StartupError};

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["broker"], "ok");
    app.register("ivy").await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"route="/api/users/register",status="2xx""#),
        "{text}"
    );
}

#[test]
fn binary_refuses_to_start_without_database_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .env_clear()
        .env("BROKER_URL", "nats://127.0.0.1:4222")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL is required"), "{stderr}");
}

#[test]
fn binary_refuses_to_start_without_broker_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .env_clear()
        .env("DATABASE_URL", "postgres://127.0.0.1/db")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BROKER_URL is required"), "{stderr}");
}

#[tokio::test]
async fn unreachable_database_fails_start_up_after_the_retry_period_without_leaking_the_password() {
    let database = silo_testenv::TestDatabase::create().await;
    let namespace =
        EventNamespace::prefixed(format!("u{}", silo_testenv::unique_suffix())).unwrap();
    let mut config = test_config(&database, &namespace);
    // Port 9 (discard) is closed on test machines.
    config.base.database_url = Secret::new("postgres://svc:hunter2secret@127.0.0.1:9/users");
    config.startup_timeout = Duration::from_millis(500);
    let error = Application::build(config).await.unwrap_err();
    assert!(matches!(error, StartupError::Database(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:9/users"), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
}

#[tokio::test]
async fn unreachable_broker_fails_start_up_after_the_retry_period() {
    let database = silo_testenv::TestDatabase::create().await;
    let namespace =
        EventNamespace::prefixed(format!("u{}", silo_testenv::unique_suffix())).unwrap();
    let mut config = test_config(&database, &namespace);
    config.base.broker_url = Secret::new("nats://127.0.0.1:9");
    config.startup_timeout = Duration::from_millis(500);
    let error = Application::build(config).await.unwrap_err();
    assert!(matches!(error, StartupError::Broker(_)), "{error}");
    assert!(error.to_string().contains("127.0.0.1:9"), "{error}");
}

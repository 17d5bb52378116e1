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

#[tokio::test]
async fn binary_serves_until_sigterm_then_exits_cleanly() {
    let database = silo_testenv::TestDatabase::create().await;
    let namespace = format!("u{}", silo_testenv::unique_suffix());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .env_clear()
        .env("DATABASE_URL", database.url())
        .env("BROKER_URL", silo_testenv::require("SILO_NATS_URL"))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("EVENT_NAMESPACE", &namespace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let mut healthy = false;
    for _ in 0..300 {
        if client
            .get(&healthz)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !healthy {
        let _ = child.kill();
        panic!("user-service binary did not become healthy");
    }
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let mut exit = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = exit else {
        let _ = child.kill();
        panic!("user-service did not exit after SIGTERM");
    };
    assert!(status.success(), "exit status {status}");
    let jetstream = silo_kit::broker::jetstream(silo_testenv::nats_client().await);
    let _ = jetstream
        .delete_stream(
            EventNamespace::prefixed(namespace)
                .unwrap()
                .stream_name(silo_kit::events::StreamKind::Users),
        )
        .await;
}

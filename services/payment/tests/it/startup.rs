//! payment-service picks its store by the `DATABASE_URL` scheme and refuses what it cannot use.

use payment_service::gateway::SimulatedGatewayConfig;
use payment_service::startup::StartupError;
use payment_service::{Application, PaymentConfig};
use silo_kit::config::{BaseConfig, Secret};
use silo_kit::events::EventNamespace;
use std::time::Duration;

fn config(database_url: &str) -> PaymentConfig {
    PaymentConfig {
        base: BaseConfig {
            listen_addr: ([127, 0, 0, 1], 0).into(),
            database_url: Secret::new(database_url),
            broker_url: Secret::new(silo_testenv::require("SILO_NATS_URL")),
            server: silo_kit::server::ServerLimits::default(),
        },
        user_service_url: "http://127.0.0.1:9".into(),
        gateway: SimulatedGatewayConfig::default(),
        namespace: EventNamespace::prefixed(format!("t{}", silo_testenv::unique_suffix())).unwrap(),
        startup_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused() {
    let error = Application::build(config("mysql://u:p@127.0.0.1/payments"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StartupError::UnsupportedDatabase),
        "{error}"
    );
}

#[tokio::test]
async fn a_mongodb_url_must_name_its_database() {
    let error = Application::build(config("mongodb://127.0.0.1:9"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StartupError::MongoDatabaseMissing),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_stops_start_up() {
    let error = Application::build(config("postgres://svc:s3cret@127.0.0.1:9/paymentdb"))
        .await
        .unwrap_err();
    assert!(matches!(error, StartupError::Postgres(_)), "{error}");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

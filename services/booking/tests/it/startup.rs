//! booking-service refuses to start, with a clear error, when its dependencies stay away.

use crate::support::{base_config, nats_url, private_namespace};
use booking_service::startup::StartupError;
use booking_service::{Application, BookingConfig};
use std::time::Duration;

fn config(database_url: &str, broker_url: &str) -> BookingConfig {
    BookingConfig {
        base: base_config(database_url, broker_url),
        user_service_url: "http://127.0.0.1:9".into(),
        namespace: private_namespace(),
        startup_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn an_unreachable_database_stops_start_up_naming_it_but_not_the_password() {
    let error = Application::build(config(
        "postgres://svc:s3cret@127.0.0.1:9/bookingdb",
        &nats_url(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, StartupError::Database(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:9/bookingdb unreachable"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn an_unreachable_broker_stops_start_up() {
    let database = silo_testenv::TestDatabase::create().await;
    let error = Application::build(config(database.url(), "nats://127.0.0.1:9"))
        .await
        .unwrap_err();
    assert!(matches!(error, StartupError::Broker(_)), "{error}");
    assert!(error.to_string().contains("127.0.0.1:9"), "{error}");
}

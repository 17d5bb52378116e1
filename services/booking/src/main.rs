//! booking-service binary: configuration from the environment, run until SIGTERM.
//! `booking-service openapi` prints the service's OpenAPI description (docs/openapi/).

use booking_service::startup::SERVICE;
use booking_service::{Application, BookingConfig};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        print!(
            "{}",
            silo_kit::openapi::to_json(&booking_service::api::openapi())
        );
        return ExitCode::SUCCESS;
    }
    silo_kit::startup::run_main(SERVICE.name, BookingConfig::from_env, Application::build).await
}

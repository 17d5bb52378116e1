//! booking-service binary: configuration from the environment, run until SIGTERM.

use booking_service::startup::SERVICE;
use booking_service::{Application, BookingConfig};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    silo_kit::startup::run_main(SERVICE.name, BookingConfig::from_env, Application::build).await
}

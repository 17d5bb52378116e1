//! payment-service binary: configuration from the environment, run until SIGTERM.

use payment_service::startup::SERVICE;
use payment_service::{Application, PaymentConfig};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    silo_kit::startup::run_main(SERVICE.name, PaymentConfig::from_env, Application::build).await
}

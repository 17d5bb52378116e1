//! payment-service binary: configuration from the environment, run until SIGTERM.
//! `payment-service openapi` prints the service's OpenAPI description (docs/openapi/).

use payment_service::startup::SERVICE;
use payment_service::{Application, PaymentConfig};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        print!(
            "{}",
            silo_kit::openapi::to_json(&payment_service::api::openapi())
        );
        return ExitCode::SUCCESS;
    }
    silo_kit::startup::run_main(SERVICE.name, PaymentConfig::from_env, Application::build).await
}

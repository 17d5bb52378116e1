//! payment-service: reads its configuration from the environment and runs until SIGTERM.

use payment_service::{Application, PaymentConfig};
use silo_kit::config::Env;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let json_logs = env.optional("LOG_FORMAT").as_deref() == Some("json");
    silo_kit::telemetry::init("payment-service", json_logs);
    let config = match PaymentConfig::from_env(&env) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(error = %error, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    let application = match Application::build(config).await {
        Ok(application) => application,
        Err(error) => {
            tracing::error!(error = %error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(application.shutdown_handle().trigger_on_os_signal());
    application.run_until_stopped().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

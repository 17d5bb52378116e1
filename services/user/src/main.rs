//! user-service binary: configuration from the environment, run until SIGTERM.

use silo_kit::config::Env;
use std::process::ExitCode;
use user_service::{Application, UserConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match UserConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("user-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    silo_kit::telemetry::init("user-service", config.json_logs);
    let application = match Application::build(config).await {
        Ok(application) => application,
        Err(error) => {
            tracing::error!(%error, "user-service cannot start");
            eprintln!("user-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(application.shutdown_handle().trigger_on_os_signal());
    application.run_until_stopped().await;
    ExitCode::SUCCESS
}

//! user-service binary: configuration from the environment, run until SIGTERM.

use std::process::ExitCode;
use user_service::startup::SERVICE;
use user_service::{Application, UserConfig};

#[tokio::main]
async fn main() -> ExitCode {
    silo_kit::startup::run_main(SERVICE.name, UserConfig::from_env, Application::build).await
}

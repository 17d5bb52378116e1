//! user-service binary: configuration from the environment, run until SIGTERM.
//!
//! `user-service signing-key add` and `user-service signing-key retire <kid>` are the two steps
//! of a key rotation, run against the database of `DATABASE_URL` (see docs/services.md).
//! `user-service openapi` prints the service's OpenAPI description (docs/openapi/).

use std::process::ExitCode;
use user_service::startup::SERVICE;
use user_service::{Application, UserConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("signing-key") {
        return user_service::keys::command(&args[1..]).await;
    }
    if args.first().map(String::as_str) == Some("openapi") {
        print!(
            "{}",
            silo_kit::openapi::to_json(&user_service::api::openapi())
        );
        return ExitCode::SUCCESS;
    }
    silo_kit::startup::run_main(SERVICE.name, UserConfig::from_env, Application::build).await
}

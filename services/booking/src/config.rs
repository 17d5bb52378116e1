//! booking-service's configuration, read from the environment.

use silo_kit::config::{BaseConfig, ConfigError, Env};
use silo_kit::events::EventNamespace;
use std::time::Duration;

/// Everything booking-service reads at start-up.
#[derive(Debug, Clone)]
pub struct BookingConfig {
    /// `LISTEN_ADDR`, `DATABASE_URL`, `BROKER_URL`.
    pub base: BaseConfig,
    /// `USER_SERVICE_URL`: existence checks, profiles and token-signing keys.
    pub user_service_url: String,
    /// `EVENT_NAMESPACE`: prefix of stream names and subjects (tests); empty in production.
    pub namespace: EventNamespace,
    /// `STARTUP_TIMEOUT_SECS` (default 30): how long start-up retries the database and broker.
    pub startup_timeout: Duration,
}

impl BookingConfig {
    /// Reads the configuration; the error names the variable at fault.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let namespace =
            EventNamespace::from_setting(env.optional("EVENT_NAMESPACE")).map_err(|e| {
                ConfigError::Invalid {
                    name: "EVENT_NAMESPACE".into(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Self {
            base: BaseConfig::from_env(env)?,
            user_service_url: env.required("USER_SERVICE_URL")?,
            namespace,
            startup_timeout: Duration::from_secs(env.parse_or("STARTUP_TIMEOUT_SECS", 30u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_service_url_is_required() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://x"), ("BROKER_URL", "nats://x")]);
        let error = BookingConfig::from_env(&env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "USER_SERVICE_URL is required but not set"
        );
    }

    #[test]
    fn a_namespace_with_wildcards_is_refused() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x"),
            ("BROKER_URL", "nats://x"),
            ("USER_SERVICE_URL", "http://u"),
            ("EVENT_NAMESPACE", "a.*"),
        ]);
        let error = BookingConfig::from_env(&env).unwrap_err();
        assert!(error.to_string().starts_with("EVENT_NAMESPACE is invalid"));
    }
}

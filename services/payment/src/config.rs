//! payment-service's configuration, read from the environment.

use crate::gateway::SimulatedGatewayConfig;
use rust_decimal::Decimal;
use silo_kit::config::{BaseConfig, ConfigError, Env};
use silo_kit::events::EventNamespace;
use std::time::Duration;

/// Everything payment-service reads at start-up.
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// `LISTEN_ADDR`, `DATABASE_URL` (`postgres://…` or `mongodb://…/<database>`), `BROKER_URL`.
    pub base: BaseConfig,
    /// `USER_SERVICE_URL`: where the token-signing keys are published.
    pub user_service_url: String,
    /// `PAYMENT_DECLINE_ABOVE` and `PAYMENT_GATEWAY_LATENCY_MS` of the simulated gateway.
    pub gateway: SimulatedGatewayConfig,
    /// `EVENT_NAMESPACE`: prefix of stream names and subjects (tests); empty in production.
    pub namespace: EventNamespace,
    /// `STARTUP_TIMEOUT_SECS` (default 30): how long start-up retries the database and broker.
    pub startup_timeout: Duration,
}

impl PaymentConfig {
    /// Reads the configuration; the error names the variable at fault.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let decline_above: Decimal =
            env.parse_or("PAYMENT_DECLINE_ABOVE", Decimal::from(10_000))?;
        if decline_above < Decimal::ZERO {
            return Err(ConfigError::Invalid {
                name: "PAYMENT_DECLINE_ABOVE".into(),
                reason: "must not be negative".into(),
            });
        }
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
            gateway: SimulatedGatewayConfig {
                decline_above,
                latency: env.millis_or("PAYMENT_GATEWAY_LATENCY_MS", Duration::ZERO)?,
            },
            namespace,
            startup_timeout: Duration::from_secs(env.parse_or("STARTUP_TIMEOUT_SECS", 30u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("BROKER_URL", "nats://h:4222"),
            ("USER_SERVICE_URL", "http://users"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn gateway_defaults_decline_above_ten_thousand_without_latency() {
        let config = PaymentConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config.gateway, SimulatedGatewayConfig::default());
        assert_eq!(config.namespace, EventNamespace::root());
    }

    #[test]
    fn gateway_settings_are_read() {
        let config = PaymentConfig::from_env(&env(&[
            ("PAYMENT_DECLINE_ABOVE", "99.50"),
            ("PAYMENT_GATEWAY_LATENCY_MS", "15"),
        ]))
        .unwrap();
        assert_eq!(config.gateway.decline_above, Decimal::new(9950, 2));
        assert_eq!(config.gateway.latency, Duration::from_millis(15));
    }

    #[test]
    fn a_missing_user_service_url_is_named() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://x"), ("BROKER_URL", "nats://x")]);
        let error = PaymentConfig::from_env(&env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "USER_SERVICE_URL is required but not set"
        );
    }

    #[test]
    fn a_negative_threshold_is_refused() {
        let error = PaymentConfig::from_env(&env(&[("PAYMENT_DECLINE_ABOVE", "-1")])).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("PAYMENT_DECLINE_ABOVE is invalid")
        );
    }
}

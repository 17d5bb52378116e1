//! user-service configuration, read from the environment.

use base64::Engine;
use silo_kit::auth::SigningKey;
use silo_kit::config::{BaseConfig, ConfigError, Env};
use silo_kit::events::EventNamespace;
use std::time::Duration;

/// Everything user-service needs to start.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// Listen address, database and broker.
    pub base: BaseConfig,
    /// Stream/subject namespace (`EVENT_NAMESPACE`, empty in production).
    pub namespace: EventNamespace,
    /// Lifetime of issued tokens (`TOKEN_LIFETIME_SECS`, default 3600).
    pub token_lifetime: Duration,
    /// Signing key from `JWT_SIGNING_KEY` (base64 PKCS#8 Ed25519); when absent
    /// the key is generated once and kept in the database.
    pub signing_key: Option<SigningKey>,
    /// How often the signing keys are read again from the database
    /// (`SIGNING_KEYS_RELOAD_MS`, default 10 000): a key added or retired there is used or
    /// dropped by every replica within this time, without a restart.
    pub keys_reload: Duration,
    /// How long start-up waits for the database and broker (`STARTUP_TIMEOUT_SECS`, default 30).
    pub startup_timeout: Duration,
    /// JSON logs (`LOG_FORMAT=json`).
    pub json_logs: bool,
}

impl UserConfig {
    /// Reads the configuration; errors name the variable at fault.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base = BaseConfig::from_env(env)?;
        let namespace = EventNamespace::from_env(env)?;
        let signing_key = match env.optional("JWT_SIGNING_KEY") {
            None => None,
            Some(encoded) => Some(parse_signing_key(&encoded)?),
        };
        Ok(Self {
            base,
            namespace,
            token_lifetime: Duration::from_secs(env.parse_or("TOKEN_LIFETIME_SECS", 3600u64)?),
            signing_key,
            keys_reload: env.millis_or("SIGNING_KEYS_RELOAD_MS", Duration::from_secs(10))?,
            startup_timeout: Duration::from_secs(env.parse_or("STARTUP_TIMEOUT_SECS", 30u64)?),
            json_logs: env.optional("LOG_FORMAT").as_deref() == Some("json"),
        })
    }
}

fn parse_signing_key(encoded: &str) -> Result<SigningKey, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "JWT_SIGNING_KEY".into(),
        reason: reason.into(),
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid("not base64"))?;
    SigningKey::from_pkcs8_der(&der).map_err(|_| invalid("not a PKCS#8 Ed25519 private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("BROKER_URL", "nats://h:4222"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = UserConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config.base.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.token_lifetime, Duration::from_secs(3600));
        assert!(config.signing_key.is_none());
        assert_eq!(config.namespace, EventNamespace::root());
    }

    #[test]
    fn missing_broker_url_is_refused() {
        let err = UserConfig::from_env(&Env::from_pairs([("DATABASE_URL", "postgres://h/db")]))
            .unwrap_err();
        assert_eq!(err.to_string(), "BROKER_URL is required but not set");
    }

    #[test]
    fn signing_key_from_env_round_trips() {
        let key = SigningKey::generate();
        let encoded = base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().unwrap());
        let config = UserConfig::from_env(&env(&[("JWT_SIGNING_KEY", &encoded)])).unwrap();
        assert_eq!(config.signing_key.unwrap().kid(), key.kid());
    }

    #[test]
    fn invalid_signing_key_is_refused_without_echoing_it() {
        let err = UserConfig::from_env(&env(&[("JWT_SIGNING_KEY", "c2VjcmV0")])).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("JWT_SIGNING_KEY is invalid"), "{text}");
        assert!(!text.contains("c2VjcmV0"));
    }
}

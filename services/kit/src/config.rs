//! Typed configuration read from the environment.
//!
//! Values come from an [`Env`], which is the process environment in production
//! and a fixed map in tests (mutating the process environment is `unsafe` in
//! edition 2024). Error messages name the variable, never its value, because
//! values such as `DATABASE_URL` carry credentials.

use crate::server::ServerLimits;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// The listen address used when `LISTEN_ADDR` is unset.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{name} is required but not set")]
    Missing {
        /// The variable's name.
        name: String,
    },
    /// A variable is set but cannot be parsed.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: String,
        /// Why the value was rejected (never the value itself).
        reason: String,
    },
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A source of configuration variables.
pub struct Env {
    lookup: Lookup,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env")
    }
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed set of variables (for tests and embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The variable's value; empty values count as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// The variable's value, or [`ConfigError::Missing`].
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_string(),
        })
    }

    /// A required variable that holds a credential (its value is redacted in `Debug`).
    pub fn required_secret(&self, name: &str) -> Result<Secret, ConfigError> {
        self.required(name).map(Secret::new)
    }

    /// The variable parsed as `T`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name: name.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    /// A duration given in milliseconds, or `default` when unset.
    pub fn millis_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        self.parse_or(name, default_ms).map(Duration::from_millis)
    }

    /// `LISTEN_ADDR`, defaulting to [`DEFAULT_LISTEN_ADDR`].
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let default = SocketAddr::from(([0, 0, 0, 0], 8080));
        self.parse_or("LISTEN_ADDR", default)
    }
}

/// A credential-bearing string (a URL with a password, a key) whose `Debug`
/// and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `text` with the user-info of every URL in it (`scheme://user:password@`)
/// replaced by `***`: client errors may echo the URL they were given.
pub fn redact_credentials(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        redacted.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(after.len());
        match after[..authority_len].rfind('@') {
            Some(at) => {
                redacted.push_str("***");
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    redacted.push_str(rest);
    redacted
}

/// The settings every service shares: where to listen, its database and its broker.
#[derive(Debug, Clone)]
pub struct BaseConfig {
    /// Address the HTTP server binds (`LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The service's own database (`DATABASE_URL`).
    pub database_url: Secret,
    /// The NATS server (`BROKER_URL`).
    pub broker_url: Secret,
    /// Timeouts, concurrency and shutdown of the HTTP server (see [`ServerLimits`]).
    pub server: ServerLimits,
}

impl BaseConfig {
    /// Reads `LISTEN_ADDR`, `DATABASE_URL`, `BROKER_URL` and the server's limits.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: env.listen_addr()?,
            database_url: env.required_secret("DATABASE_URL")?,
            broker_url: env.required_secret("BROKER_URL")?,
            server: ServerLimits::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_defaults_to_all_interfaces_on_8080() {
        let env = Env::from_pairs(Vec::<(String, String)>::new());
        assert_eq!(env.listen_addr().unwrap().to_string(), DEFAULT_LISTEN_ADDR);
    }

    #[test]
    fn missing_database_url_is_named_in_the_error() {
        let env = Env::from_pairs([("BROKER_URL", "nats://x")]);
        let err = BaseConfig::from_env(&env).unwrap_err();
        assert_eq!(err.to_string(), "DATABASE_URL is required but not set");
    }

    #[test]
    fn empty_value_counts_as_missing() {
        let env = Env::from_pairs([("DATABASE_URL", " "), ("BROKER_URL", "nats://x")]);
        assert!(matches!(
            BaseConfig::from_env(&env),
            Err(ConfigError::Missing { name }) if name == "DATABASE_URL"
        ));
    }

    #[test]
    fn invalid_number_names_variable_but_not_value() {
        let env = Env::from_pairs([("PAYMENT_DECLINE_ABOVE", "s3cr3t")]);
        let err = env
            .parse_or("PAYMENT_DECLINE_ABOVE", 10_000u64)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("PAYMENT_DECLINE_ABOVE is invalid"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("BROKER_URL", "nats://h"),
        ]);
        let config = BaseConfig::from_env(&env).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.database_url.expose(), "postgres://u:hunter2@h/db");
    }

    #[test]
    fn credentials_in_urls_are_redacted_wherever_they_appear() {
        assert_eq!(
            redact_credentials("error connecting to postgres://app:s3cret@db:5432/x: refused"),
            "error connecting to postgres://***@db:5432/x: refused"
        );
        assert_eq!(
            redact_credentials("a nats://u:p@h:4222 and b nats://v:q@k:4222"),
            "a nats://***@h:4222 and b nats://***@k:4222"
        );
        assert_eq!(
            redact_credentials("no credentials in http://h:80/p?x=a@b"),
            "no credentials in http://h:80/p?x=a@b"
        );
        assert_eq!(redact_credentials("plain text"), "plain text");
    }
}

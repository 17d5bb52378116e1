//! NATS start-up: connect with bounded retry, hand out a JetStream context.

use crate::config::Secret;
use crate::retry::RetryPolicy;
use async_nats::jetstream;
use std::time::Duration;

/// Connecting to the broker failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The server stayed unreachable for the whole retry period.
    #[error("broker {server} unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        /// Server host and port (credentials removed).
        server: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// A stream could not be created.
    #[error("cannot create JetStream stream {stream}: {reason}")]
    Stream {
        /// The stream.
        stream: String,
        /// The server's error.
        reason: String,
    },
}

/// `host:port` of a NATS URL, without scheme or credentials.
fn server_of(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_credentials = without_scheme
        .rsplit_once('@')
        .map_or(without_scheme, |(_, rest)| rest);
    without_credentials.to_string()
}

/// Connects to NATS at `url` (retrying within `retry`); the client itself
/// reconnects forever afterwards.
pub async fn connect(
    url: &Secret,
    name: &str,
    retry: RetryPolicy,
) -> Result<async_nats::Client, BrokerError> {
    let server = server_of(url.expose());
    retry
        .run("nats", || {
            async_nats::ConnectOptions::new()
                .name(name)
                .connection_timeout(Duration::from_secs(3))
                .connect(url.expose())
        })
        .await
        .map_err(|(error, attempts)| BrokerError::Unreachable {
            server,
            attempts,
            reason: crate::config::redact_credentials(&error.to_string()),
        })
}

/// A JetStream context with a bounded ack timeout.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    let mut context = jetstream::new(client);
    context.set_timeout(Duration::from_secs(5));
    context
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn server_name_drops_scheme_and_credentials() {
        assert_eq!(server_of("nats://u:pw@h:4222"), "h:4222");
        assert_eq!(server_of("h:4222"), "h:4222");
    }
}

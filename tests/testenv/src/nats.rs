//! A client for the local NATS server (JetStream enabled).

/// Connects to the NATS server that `tests/env/up` started.
pub async fn nats_client() -> async_nats::Client {
    let url = crate::require("SILO_NATS_URL");
    async_nats::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the local NATS at {url}: {e}"))
}

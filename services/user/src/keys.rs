//! Loading the token signing keys: from `JWT_SIGNING_KEY`, else from the
//! database (generated on first start, shared by replicas, survives restarts).

use chrono::Duration;
use silo_kit::auth::{SigningKey, TokenIssuer};
use sqlx::PgPool;

/// Loading or storing keys failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored key is unusable.
    #[error("stored signing key {kid} is invalid")]
    InvalidStoredKey {
        /// The key id.
        kid: String,
    },
    /// A new key could not be encoded.
    #[error("cannot encode a new signing key")]
    Encoding,
}

/// The issuer for this process: the configured key, or the newest stored key
/// (creating one if there is none) plus older stored keys for verification.
pub async fn load_issuer(
    pool: &PgPool,
    configured: Option<SigningKey>,
    lifetime: Duration,
) -> Result<TokenIssuer, KeyStoreError> {
    if let Some(key) = configured {
        return Ok(TokenIssuer::new(key, Vec::new(), lifetime));
    }
    let mut tx = pool.begin().await?;
    // Replicas starting together must agree on one key.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('user-service.signing_keys'))")
        .execute(&mut *tx)
        .await?;
    let stored: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, private_key FROM signing_keys ORDER BY created_at DESC")
            .fetch_all(&mut *tx)
            .await?;
    let mut keys = Vec::with_capacity(stored.len());
    for (kid, der) in stored {
        keys.push(
            SigningKey::from_pkcs8_der(&der)
                .map_err(|_| KeyStoreError::InvalidStoredKey { kid })?,
        );
    }
    if keys.is_empty() {
        let key = SigningKey::generate();
        let der = key.to_pkcs8_der().map_err(|_| KeyStoreError::Encoding)?;
        sqlx::query("INSERT INTO signing_keys (kid, private_key) VALUES ($1, $2)")
            .bind(key.kid())
            .bind(der)
            .execute(&mut *tx)
            .await?;
        tracing::info!(kid = key.kid(), "generated a new token signing key");
        keys.push(key);
    }
    tx.commit().await?;
    let current = keys.remove(0);
    Ok(TokenIssuer::new(current, keys, lifetime))
}

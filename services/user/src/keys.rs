//! Loading the token signing keys: from `JWT_SIGNING_KEY`, else from the
//! database (generated on first start, shared by replicas, survives restarts).

use chrono::Duration;
use silo_kit::auth::{SigningKey, TokenIssuer, TokenVerifier};
use silo_kit::shutdown::Shutdown;
use sqlx::PgPool;
use std::sync::Arc;

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
    let mut keys = stored_keys(&mut *tx).await?;
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

/// The stored keys, newest first (the newest signs).
async fn stored_keys<'c>(
    executor: impl sqlx::PgExecutor<'c>,
) -> Result<Vec<SigningKey>, KeyStoreError> {
    let stored: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, private_key FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(executor)
            .await?;
    stored
        .into_iter()
        .map(|(kid, der)| {
            SigningKey::from_pkcs8_der(&der).map_err(|_| KeyStoreError::InvalidStoredKey { kid })
        })
        .collect()
}

/// Reads the stored keys into `issuer` and `verifier` every `interval` until `shutdown`: a
/// key inserted into `signing_keys` signs from the next read on (the newest signs), a deleted
/// one is no longer published or accepted. An empty table or an unusable key keeps the keys
/// in use (and is logged).
pub async fn keep_keys_current(
    pool: PgPool,
    issuer: Arc<TokenIssuer>,
    verifier: TokenVerifier,
    interval: std::time::Duration,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.wait() => return,
        }
        let mut keys = match stored_keys(&pool).await {
            Ok(keys) if !keys.is_empty() => keys,
            Ok(_) => {
                tracing::warn!("signing_keys is empty; keeping the keys in use");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the signing keys; keeping the keys in use");
                continue;
            }
        };
        let current = keys.remove(0);
        if issuer.replace_keys(current, keys) {
            verifier.replace_keys(&issuer.jwks()).await;
            tracing::info!(kid = %issuer.current_kid(), "signing keys changed");
        }
    }
}

/// Adds a new signing key (it signs from each replica's next reload on); returns its kid.
pub async fn add_key(pool: &PgPool) -> Result<String, KeyStoreError> {
    let key = SigningKey::generate();
    let der = key.to_pkcs8_der().map_err(|_| KeyStoreError::Encoding)?;
    // Later than every stored key even if clocks of earlier writers ran ahead.
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key, created_at) \
         SELECT $1, $2, greatest(now(), max(created_at) + interval '1 millisecond') FROM signing_keys",
    )
    .bind(key.kid())
    .bind(der)
    .execute(pool)
    .await?;
    Ok(key.kid().to_string())
}

/// Why a key cannot be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// No stored key has this kid.
    #[error("no signing key {0}")]
    Unknown(String),
    /// It is the newest key: retiring it would leave replicas signing with a key none publish.
    #[error("{0} is the key tokens are signed with; add a new key first")]
    Current(String),
    /// PostgreSQL failed.
    #[error(transparent)]
    Store(#[from] KeyStoreError),
}

/// Deletes signing key `kid`, unless it is the newest (the one that signs).
pub async fn retire_key(pool: &PgPool, kid: &str) -> Result<(), RetireError> {
    let keys = stored_keys(pool).await?;
    match keys.iter().position(|key| key.kid() == kid) {
        None => return Err(RetireError::Unknown(kid.to_string())),
        Some(0) => return Err(RetireError::Current(kid.to_string())),
        Some(_) => {}
    }
    sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
        .bind(kid)
        .execute(pool)
        .await
        .map_err(KeyStoreError::from)?;
    Ok(())
}

/// `signing-key add` | `signing-key retire <kid>`, against `DATABASE_URL`.
pub async fn command(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let usage = "usage: user-service signing-key add | user-service signing-key retire <kid>";
    let Some(url) = silo_kit::config::Env::process().optional("DATABASE_URL") else {
        eprintln!("DATABASE_URL is required but not set");
        return ExitCode::FAILURE;
    };
    let pool = match PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) => {
            let reason = silo_kit::config::redact_credentials(&error.to_string());
            eprintln!("cannot connect to DATABASE_URL: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args {
        [verb] if verb == "add" => add_key(&pool)
            .await
            .map(|kid| format!("added {kid}"))
            .map_err(|e| e.to_string()),
        [verb, kid] if verb == "retire" => retire_key(&pool, kid)
            .await
            .map(|()| format!("retired {kid}"))
            .map_err(|e| e.to_string()),
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("signing-key: {error}");
            ExitCode::FAILURE
        }
    }
}

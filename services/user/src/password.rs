//! Argon2id password hashing, off the async runtime (it is deliberately slow).

use crate::validation::Password;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Hashing failed (never includes the password).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The hasher failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed")]
    Task,
    /// Every hashing slot stayed busy for the whole wait.
    #[error("too many password hashes in progress")]
    Overloaded,
}

/// How long a request waits for a hashing slot before it is refused.
const SLOT_WAIT: Duration = Duration::from_millis(500);

/// Bounds the Argon2 work in flight: each hash takes ~19 MiB and a core for
/// tens of milliseconds, and the endpoints that hash are unauthenticated, so
/// without a bound a burst of requests exhausts memory and the blocking pool.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl Hasher {
    /// At most `concurrency` hashes at once; a caller waits up to `wait` for a slot.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
        }
    }

    /// Two hashes per available core, waiting briefly for a slot.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores * 2, SLOT_WAIT)
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, PasswordError> {
        match tokio::time::timeout(self.wait, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(PasswordError::Overloaded),
        }
    }

    /// [`hash`] within a slot.
    pub async fn hash(&self, password: Password) -> Result<String, PasswordError> {
        let _slot = self.slot().await?;
        hash(password).await
    }

    /// [`verify`] within a slot.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let _slot = self.slot().await?;
        verify(password, stored).await
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's Argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// A hash to verify against when the user does not exist, so that unknown
/// users take as long to reject as wrong passwords.
static DECOY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(b"decoy password, never matches", &salt)
        .ok()
        .map(|hash| hash.to_string())
});

/// The PHC string of `password` hashed with Argon2id and a random salt.
pub async fn hash(password: Password) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|_| PasswordError::Task)?
}

/// Whether `password` matches `stored` (a PHC string); `None` verifies
/// against a decoy and returns false.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let (stored, real) = match stored {
            Some(stored) => (stored, true),
            None => match DECOY_HASH.as_ref() {
                Some(decoy) => (decoy.clone(), false),
                None => return Ok(false),
            },
        };
        let parsed = PasswordHash::new(&stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let matches = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(real && matches)
    })
    .await
    .map_err(|_| PasswordError::Task)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_is_argon2id_and_verifies_only_the_same_password() {
        let stored = hash(Password::parse("correct horse").unwrap())
            .await
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(
            verify("correct horse".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse!".into(), Some(stored)).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn hashing_is_refused_while_every_slot_stays_busy() {
        let hasher = Hasher::new(1, Duration::from_millis(100));
        let busy = hasher.slots.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            hasher.hash(Password::parse("correct horse").unwrap()).await,
            Err(PasswordError::Overloaded)
        ));
        assert!(matches!(
            hasher.verify("correct horse".into(), None).await,
            Err(PasswordError::Overloaded)
        ));
        drop(busy);
        assert_eq!(hasher.verify("x".repeat(8), None).await.ok(), Some(false));
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(
            !verify("decoy password, never matches".into(), None)
                .await
                .unwrap()
        );
    }
}

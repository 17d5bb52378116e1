//! Token verification against a JWKS, fetched from user-service or given.

use super::keys::{Jwk, Jwks};
use super::{AuthError, Claims, ISSUER};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// How often an unknown `kid` may trigger a refetch by default (forged tokens
/// must not turn into a request flood against user-service).
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// How long fetched keys are trusted before they are fetched again by default: a key
/// user-service retires stops verifying within this time.
pub const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(60);

/// Seconds a token is still accepted after its `exp` (clock skew between replicas).
pub const EXPIRY_LEEWAY_SECS: u64 = 1;

/// The largest JWKS body read (a handful of keys is a few hundred bytes).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The path user-service serves its JWKS at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// When a remote verifier fetches the JWKS again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Keys older than this are fetched again before a token is checked.
    pub ttl: Duration,
    /// At most one fetch per this interval, whatever triggers it (an unknown `kid`, the TTL).
    pub min_interval: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_KEYS_TTL,
            min_interval: DEFAULT_MIN_REFRESH_INTERVAL,
        }
    }
}

enum KeySource {
    Remote {
        url: String,
        http: reqwest::Client,
        policy: RefreshPolicy,
    },
    Fixed,
}

struct Inner {
    source: KeySource,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the JWKS was last requested and whether that succeeded: failures
    /// are rate-limited too, or an outage of user-service turns every request
    /// with a token into a fetch against it.
    last_fetch: Mutex<Option<(Instant, bool)>>,
    /// When the keys in use were last fetched successfully.
    fetched_at: std::sync::Mutex<Option<Instant>>,
    validation: Validation,
}

/// Verifies tokens; cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier")
    }
}

fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = EXPIRY_LEEWAY_SECS;
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iss"]);
    validation
}

fn decoding_keys(jwks: &Jwks) -> HashMap<String, DecodingKey> {
    jwks.keys
        .iter()
        .filter(|jwk| jwk.kty == "OKP" && jwk.crv == "Ed25519")
        .filter_map(|jwk: &Jwk| {
            DecodingKey::from_ed_components(&jwk.x)
                .ok()
                .map(|key| (jwk.kid.clone(), key))
        })
        .collect()
}

impl TokenVerifier {
    /// Verifies with keys fetched from `{user_service_url}/.well-known/jwks.json`.
    pub fn remote(user_service_url: &str) -> Self {
        Self::remote_with_policy(user_service_url, RefreshPolicy::default())
    }

    /// Like [`remote`](Self::remote), refetching at most once per `min_refresh_interval`.
    pub fn remote_with_refresh_interval(
        user_service_url: &str,
        min_refresh_interval: Duration,
    ) -> Self {
        let policy = RefreshPolicy {
            min_interval: min_refresh_interval,
            ..RefreshPolicy::default()
        };
        Self::remote_with_policy(user_service_url, policy)
    }

    /// Like [`remote`](Self::remote), refreshing as `policy` says.
    pub fn remote_with_policy(user_service_url: &str, policy: RefreshPolicy) -> Self {
        let url = format!("{}{JWKS_PATH}", user_service_url.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self::with_source(KeySource::Remote { url, http, policy }, HashMap::new())
    }

    /// Verifies with a fixed key set (user-service verifying its own tokens).
    pub fn fixed(jwks: &Jwks) -> Self {
        Self::with_source(KeySource::Fixed, decoding_keys(jwks))
    }

    /// Verifies with `jwks` from now on (a fixed verifier whose issuer's keys changed).
    pub async fn replace_keys(&self, jwks: &Jwks) {
        *self.inner.keys.write().await = decoding_keys(jwks);
    }

    fn with_source(source: KeySource, keys: HashMap<String, DecodingKey>) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                keys: RwLock::new(keys),
                last_fetch: Mutex::new(None),
                fetched_at: std::sync::Mutex::new(None),
                validation: validation(),
            }),
        }
    }

    /// The claims of a valid token.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Malformed)?;
        self.refresh_if_stale().await;
        let key = match self.cached(&kid).await {
            Some(key) => key,
            None => {
                self.refresh().await?;
                self.cached(&kid).await.ok_or(AuthError::UnknownKey)?
            }
        };
        jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_) => AuthError::Malformed,
                _ => AuthError::Invalid,
            })
    }

    async fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.inner.keys.read().await.get(kid).cloned()
    }

    /// Fetches the keys again once they are older than the TTL. A failure keeps the keys in
    /// use (user-service briefly unreachable must not reject every token); it is logged, and
    /// retried at most once per minimum interval.
    async fn refresh_if_stale(&self) {
        let KeySource::Remote { policy, .. } = &self.inner.source else {
            return;
        };
        let fetched_at = *self
            .inner
            .fetched_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fetched_at.is_some_and(|at| at.elapsed() >= policy.ttl) {
            let _ = self.refresh().await;
        }
    }

    /// Refetches the JWKS unless it was fetched within the minimum refresh interval.
    async fn refresh(&self) -> Result<(), AuthError> {
        let KeySource::Remote { url, http, policy } = &self.inner.source else {
            return Ok(());
        };
        let min_refresh_interval = &policy.min_interval;
        // One fetch at a time; callers that waited reuse its result.
        let mut last_fetch = self.inner.last_fetch.lock().await;
        if let Some((at, succeeded)) = *last_fetch
            && at.elapsed() < *min_refresh_interval
        {
            return if succeeded {
                Ok(())
            } else {
                Err(AuthError::KeysUnavailable)
            };
        }
        match fetch_jwks(http, url).await {
            Ok(jwks) => {
                *self.inner.keys.write().await = decoding_keys(&jwks);
                *last_fetch = Some((Instant::now(), true));
                *self
                    .inner
                    .fetched_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                Ok(())
            }
            Err(error) => {
                *last_fetch = Some((Instant::now(), false));
                tracing::warn!(error = %error, "cannot fetch JWKS from user-service");
                Err(AuthError::KeysUnavailable)
            }
        }
    }
}

/// The JWKS at `url`, read up to [`MAX_JWKS_BYTES`].
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Jwks, String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("the JWKS is not a key set: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{SigningKey, TokenIssuer};
    use uuid::Uuid;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(SigningKey::generate(), vec![], chrono::Duration::hours(1))
    }

    #[tokio::test]
    async fn token_of_the_issuer_verifies() {
        let issuer = issuer();
        let user = Uuid::new_v4();
        let (token, _) = issuer.issue(user, &["user".into()]).unwrap();
        let claims = TokenVerifier::fixed(&issuer.jwks())
            .verify(&token)
            .await
            .unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.roles, vec!["user".to_string()]);
    }

    #[tokio::test]
    async fn expired_token_is_rejected_as_expired() {
        let issuer = issuer();
        let now = chrono::Utc::now().timestamp();
        let token = issuer
            .sign(&Claims {
                sub: Uuid::new_v4(),
                roles: vec![],
                exp: now - 3600,
                iat: now - 7200,
                iss: ISSUER.into(),
            })
            .unwrap();
        let result = TokenVerifier::fixed(&issuer.jwks()).verify(&token).await;
        assert_eq!(result, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn token_from_another_key_with_a_published_kid_is_rejected() {
        let published = issuer();
        let forger = SigningKey::generate();
        // The forger reuses the published kid but signs with its own key.
        let forged_kid_key = {
            let (token, _) = TokenIssuer::new(forger, vec![], chrono::Duration::hours(1))
                .issue(Uuid::new_v4(), &["admin".into()])
                .unwrap();
            let published_kid = published.jwks().keys[0].kid.clone();
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            let header = serde_json::json!({"alg":"EdDSA","typ":"JWT","kid":published_kid});
            parts[0] = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                header.to_string(),
            );
            parts.join(".")
        };
        let result = TokenVerifier::fixed(&published.jwks())
            .verify(&forged_kid_key)
            .await;
        assert_eq!(result, Err(AuthError::Invalid));
    }

    #[tokio::test]
    async fn token_signed_by_an_unpublished_key_is_rejected() {
        let (token, _) = issuer().issue(Uuid::new_v4(), &[]).unwrap();
        let result = TokenVerifier::fixed(&issuer().jwks()).verify(&token).await;
        assert_eq!(result, Err(AuthError::UnknownKey));
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let result = TokenVerifier::fixed(&issuer().jwks())
            .verify("abc.def")
            .await;
        assert_eq!(result, Err(AuthError::Malformed));
    }

    #[tokio::test]
    async fn unreachable_user_service_means_keys_unavailable() {
        let (token, _) = issuer().issue(Uuid::new_v4(), &[]).unwrap();
        // Port 9 (discard) on localhost is closed on test machines.
        let result = TokenVerifier::remote("http://127.0.0.1:9")
            .verify(&token)
            .await;
        assert_eq!(result, Err(AuthError::KeysUnavailable));
    }
}

//! Authentication with EdDSA (Ed25519) JWTs.
//!
//! user-service signs tokens with a [`keys::TokenIssuer`] and publishes its
//! public keys at `/.well-known/jwks.json`; every service verifies tokens
//! with a [`verifier::TokenVerifier`] that fetches those keys from
//! `USER_SERVICE_URL` (cached, refetched on an unknown `kid`). No signing
//! secret is shared between services. Handlers take an [`AuthUser`].

pub mod keys;
pub mod verifier;

use crate::error::{ApiError, ProblemType};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keys::{Jwk, Jwks, SigningKey, TokenIssuer};
pub use verifier::{RefreshPolicy, TokenVerifier};

/// The `iss` claim of every token.
pub const ISSUER: &str = "silo-user-service";

/// The role that may read and change any user's resources.
pub const ADMIN_ROLE: &str = "admin";

/// The claims of a Silo token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's roles.
    pub roles: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Issuer, always [`ISSUER`].
    pub iss: String,
}

/// Why a request is not authenticated. Messages never include the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    MissingToken,
    /// Not a JWT, or not an EdDSA JWT with a `kid`.
    #[error("malformed token")]
    Malformed,
    /// Signed by a key user-service does not publish.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Bad signature, issuer or claims.
    #[error("invalid token")]
    Invalid,
    /// The keys could not be fetched from user-service.
    #[error("cannot fetch signing keys from user-service")]
    KeysUnavailable,
}

impl From<AuthError> for ApiError {
    /// 401 `unauthenticated` without a token, 401 `invalid-token` (and a bearer
    /// challenge with `error="invalid_token"`) for a rejected one, 503
    /// `auth-unavailable` when the keys to check it cannot be fetched.
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::KeysUnavailable => ApiError::new(
                ProblemType::AUTH_UNAVAILABLE,
                "The token cannot be verified right now: user-service is unreachable. Retry shortly.",
            ),
            AuthError::MissingToken => ApiError::unauthenticated(
                "This endpoint needs an Authorization: Bearer <token> header; log in to get a token.",
            ),
            AuthError::Malformed => ApiError::invalid_token("the token is not a valid JWT"),
            AuthError::UnknownKey => ApiError::invalid_token(
                "the token is signed by a key user-service does not publish",
            ),
            AuthError::Expired => ApiError::invalid_token("the token has expired"),
            AuthError::Invalid => {
                ApiError::invalid_token("the token's signature, issuer or claims are not valid")
            }
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The user id (`sub`).
    pub id: Uuid,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl AuthUser {
    /// Whether the caller has the admin role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|role| role == ADMIN_ROLE)
    }

    /// Whether the caller may act on resources owned by `owner`.
    pub fn may_access(&self, owner: Uuid) -> bool {
        self.id == owner || self.is_admin()
    }
}

impl From<Claims> for AuthUser {
    fn from(claims: Claims) -> Self {
        Self {
            id: claims.sub,
            roles: claims.roles,
        }
    }
}

/// The bearer token of a request, if any.
fn bearer_token(parts: &Parts) -> Result<&str, AuthError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?;
    let value = header.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // Credentials of another scheme (Basic, ...) are no bearer token at all.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    if token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    TokenVerifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        let verifier = TokenVerifier::from_ref(state);
        let claims = verifier.verify(token).await?;
        Ok(claims.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt;

    /// A route that needs a token, verified against `issuer`'s keys.
    fn app(issuer: &TokenIssuer) -> Router {
        Router::new()
            .route(
                "/me",
                get(|caller: AuthUser| async move { caller.id.to_string() }),
            )
            .with_state(TokenVerifier::fixed(&issuer.jwks()))
    }

    async fn call(
        issuer: &TokenIssuer,
        authorization: Option<String>,
    ) -> (StatusCode, String, serde_json::Value) {
        let mut request = Request::get("/me");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app(issuer)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (
            status,
            challenge,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(SigningKey::generate(), vec![], chrono::Duration::hours(1))
    }

    fn token(issuer: &TokenIssuer, expires_in_secs: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        issuer
            .sign(&Claims {
                sub: Uuid::new_v4(),
                roles: vec![],
                exp: now + expires_in_secs,
                iat: now,
                iss: ISSUER.to_string(),
            })
            .unwrap()
    }

    #[tokio::test]
    async fn no_token_is_a_401_challenge_without_an_error_code() {
        let issuer = issuer();
        for authorization in [None, Some("Basic YWRhOnNlY3JldA==".to_string())] {
            let (status, challenge, body) = call(&issuer, authorization).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(challenge, "Bearer realm=\"silo\"");
            assert_eq!(body["type"], "https://silo.dev/problems/unauthenticated");
        }
    }

    #[tokio::test]
    async fn a_rejected_token_is_a_401_invalid_token_challenge() {
        let issuer = issuer();
        let expired = token(&issuer, -3600);
        let forged = token(&self::issuer(), 3600);
        for (token, reason) in [
            (expired, "the token has expired"),
            (
                forged,
                "the token is signed by a key user-service does not publish",
            ),
            ("not-a-jwt".to_string(), "the token is not a valid JWT"),
            (String::new(), "the token is not a valid JWT"),
        ] {
            let (status, challenge, body) = call(&issuer, Some(format!("Bearer {token}"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
            assert_eq!(
                challenge,
                format!(
                    "Bearer realm=\"silo\", error=\"invalid_token\", error_description=\"{reason}\""
                )
            );
            assert_eq!(body["type"], "https://silo.dev/problems/invalid-token");
            assert_eq!(body["detail"], reason);
        }
    }

    #[tokio::test]
    async fn a_valid_token_passes() {
        let issuer = issuer();
        let (status, _, _) = call(&issuer, Some(format!("Bearer {}", token(&issuer, 3600)))).await;
        assert_eq!(status, StatusCode::OK);
    }
}

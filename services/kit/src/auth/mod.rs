//! Authentication with EdDSA (Ed25519) JWTs.
//!
//! user-service signs tokens with a [`keys::TokenIssuer`] and publishes its
//! public keys at `/.well-known/jwks.json`; every service verifies tokens
//! with a [`verifier::TokenVerifier`] that fetches those keys from
//! `USER_SERVICE_URL` (cached, refetched on an unknown `kid`). No signing
//! secret is shared between services. Handlers take an [`AuthUser`].

pub mod keys;
pub mod verifier;

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keys::{Jwk, Jwks, SigningKey, TokenIssuer};
pub use verifier::TokenVerifier;

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
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::KeysUnavailable => ApiError::unavailable(
                "auth_unavailable",
                "cannot verify the token right now: user-service is unreachable",
            ),
            AuthError::MissingToken => {
                ApiError::unauthorized("an Authorization: Bearer <token> header is required")
            }
            other => ApiError::unauthorized(other.to_string()),
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
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
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

//! user-service's HTTP API.
//!
//! | Method | Path | Auth | Result |
//! |---|---|---|---|
//! | POST | `/api/users/register` | — | 201 user; 400 invalid field; 409 username/email taken |
//! | POST | `/api/users/login` | — | 200 `{token, expiresAt, user}`; 401 |
//! | GET | `/.well-known/jwks.json` | — | 200 JWKS |
//! | GET | `/api/users/{id}` | the user or an admin | 200 / 403 / 404 |
//! | GET | `/api/users/{id}/exists` | any user | 200 `{"exists":true}` / 404 |
//! | PATCH | `/api/users/{id}` | the user or an admin | 200 / 400 / 403 / 404 / 409 |

use crate::password;
use crate::repository::{NewUser, RepositoryError, User, UserRepository};
use crate::validation::{Email, FullName, Password, Username};
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use silo_kit::auth::{AuthUser, Jwks, TokenIssuer, TokenVerifier};
use silo_kit::correlation::CorrelationId;
use silo_kit::error::ApiError;
use silo_kit::extract::{Json, Path};
use std::sync::Arc;
use uuid::Uuid;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The users database.
    pub repository: UserRepository,
    /// Signs tokens.
    pub issuer: Arc<TokenIssuer>,
    /// Verifies tokens (with this service's own public keys).
    pub verifier: TokenVerifier,
    /// Hashes and verifies passwords with bounded concurrency.
    pub hasher: password::Hasher,
}

impl FromRef<ApiState> for TokenVerifier {
    fn from_ref(state: &ApiState) -> Self {
        state.verifier.clone()
    }
}

/// The routes, before state is applied.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/users/register", post(register))
        .route("/api/users/login", post(login))
        .route("/api/users/{id}", get(get_user).patch(update_user))
        .route("/api/users/{id}/exists", get(user_exists))
        .route("/.well-known/jwks.json", get(jwks))
}

/// `POST /api/users/register` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    /// 3–50 of `[A-Za-z0-9_.-]`.
    pub username: String,
    /// Email address.
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    /// Display name.
    pub full_name: String,
}

/// `POST /api/users/login` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or email.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Shown instead of a password by the hand-written `Debug` impls.
const REDACTED: &str = "<redacted>";

// Debug by hand: a derived impl would print the plaintext password into any
// log line or panic message that formats the request.
impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("full_name", &self.full_name)
            .finish()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identifier too: users type their password into it by mistake.
        f.debug_struct("LoginRequest")
            .field("username", &REDACTED)
            .field("password", &REDACTED)
            .finish()
    }
}

/// `PATCH /api/users/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateUserRequest {
    /// New email.
    #[serde(default)]
    pub email: Option<String>,
    /// New full name.
    #[serde(default)]
    pub full_name: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    id: Uuid,
    username: String,
    email: String,
    full_name: String,
    roles: Vec<String>,
    created_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            full_name: user.full_name,
            roles: user.roles,
            created_at: user.created_at,
        }
    }
}

/// Successful login.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    token: String,
    expires_at: DateTime<Utc>,
    user: UserResponse,
}

impl From<RepositoryError> for ApiError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::UsernameTaken => {
                ApiError::conflict("username_taken", "username is already taken")
                    .with_field("username")
            }
            RepositoryError::EmailTaken => {
                ApiError::conflict("email_taken", "email is already registered").with_field("email")
            }
            RepositoryError::NotFound => ApiError::not_found("user not found"),
            other => ApiError::internal(other),
        }
    }
}

impl From<password::PasswordError> for ApiError {
    fn from(error: password::PasswordError) -> Self {
        match error {
            password::PasswordError::Overloaded => ApiError::unavailable(
                "overloaded",
                "too many sign-ups and logins in progress; retry in a moment",
            ),
            other => ApiError::internal(other),
        }
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid username or password")
}

async fn register(
    State(state): State<ApiState>,
    correlation_id: CorrelationId,
    Json(request): Json<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let username = Username::parse(&request.username)?;
    let email = Email::parse(&request.email)?;
    let password = Password::parse(&request.password)?;
    let full_name = FullName::parse(&request.full_name)?;
    let password_hash = state.hasher.hash(password).await?;
    let user = state
        .repository
        .register(
            NewUser {
                username,
                email,
                full_name,
                password_hash,
            },
            &correlation_id,
        )
        .await?;
    tracing::info!(user_id = %user.id, "user registered");
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/users/{}", user.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(UserResponse::from(user))))
}

async fn login(
    State(state): State<ApiState>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    // Longer than any valid password: reject without spending a hash on it.
    if request.password.chars().count() > 128 || request.username.trim().is_empty() {
        return Err(invalid_credentials());
    }
    let found = state.repository.find_for_login(&request.username).await?;
    let (user_id, stored_hash) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let valid = state.hasher.verify(request.password, stored_hash).await?;
    let user_id = match (valid, user_id) {
        (true, Some(id)) => id,
        // The identifier is not logged: users type passwords into it by mistake.
        _ => {
            tracing::info!("login rejected");
            return Err(invalid_credentials());
        }
    };
    let user = state
        .repository
        .find(user_id)
        .await?
        .ok_or_else(invalid_credentials)?;
    let (token, expires_at) = state
        .issuer
        .issue(user.id, &user.roles)
        .map_err(ApiError::internal)?;
    tracing::info!(user_id = %user.id, "login succeeded");
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user: user.into(),
    }))
}

fn require_access(caller: &AuthUser, id: Uuid) -> Result<(), ApiError> {
    if caller.may_access(id) {
        Ok(())
    } else {
        Err(ApiError::forbidden("you may only access your own user"))
    }
}

async fn get_user(
    caller: AuthUser,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> Result<Json<UserResponse>, ApiError> {
    require_access(&caller, id)?;
    let user = state
        .repository
        .find(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    Ok(Json(user.into()))
}

async fn user_exists(
    _caller: AuthUser,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state.repository.exists(id).await? {
        Ok(Json(serde_json::json!({ "exists": true })))
    } else {
        Err(ApiError::not_found("user not found"))
    }
}

async fn update_user(
    caller: AuthUser,
    State(state): State<ApiState>,
    correlation_id: CorrelationId,
    Path(id): Path<Uuid>,
    Json(request): Json<UpdateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    require_access(&caller, id)?;
    if request.email.is_none() && request.full_name.is_none() {
        return Err(ApiError::bad_request(
            "nothing_to_update",
            "provide at least one of email, fullName",
        ));
    }
    let email = request.email.as_deref().map(Email::parse).transpose()?;
    let full_name = request
        .full_name
        .as_deref()
        .map(FullName::parse)
        .transpose()?;
    let user = state
        .repository
        .update(id, email, full_name, &correlation_id)
        .await?;
    tracing::info!(user_id = %user.id, by = %caller.id, "user updated");
    Ok(Json(user.into()))
}

async fn jwks(State(state): State<ApiState>) -> impl IntoResponse {
    let document: Jwks = state.issuer.jwks();
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(document),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_output_never_shows_passwords() {
        let register = RegisterRequest {
            username: "ada".into(),
            email: "ada@example.com".into(),
            password: "hunter2-secret".into(),
            full_name: "Ada".into(),
        };
        let shown = format!("{register:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("ada@example.com"), "{shown}");
        let login = LoginRequest {
            username: "hunter2-typo".into(),
            password: "hunter2-secret".into(),
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn saturated_password_hashing_is_a_503_overloaded() {
        let error = ApiError::from(password::PasswordError::Overloaded);
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code(), "overloaded");
        let error = ApiError::from(password::PasswordError::Task);
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

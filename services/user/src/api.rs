//! user-service's HTTP API.
//!
//! | Method | Path | Auth | Result |
//! |---|---|---|---|
//! | POST | `/api/users/register` | — | 201 user; 400 every invalid field; 409 username/email taken |
//! | POST | `/api/users/login` | — | 200 `{token, expiresAt, user}`; 401 |
//! | GET | `/.well-known/jwks.json` | — | 200 JWKS |
//! | GET | `/api/users/{id}` | the user or an admin | 200 / 403 / 404 |
//! | GET | `/api/users/{id}/exists` | any user | 200 `{"exists":true}` / 404 |
//! | PATCH | `/api/users/{id}` | the user or an admin | 200 / 400 / 403 / 404 / 409 |
//!
//! Errors are problems ([`silo_kit::error`]); this service's own types are
//! [`PROBLEM_TYPES`].

use crate::password;
use crate::repository::{NewUser, RepositoryError, User, UserRepository};
use crate::validation::{Email, FullName, Password, Username};
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use silo_kit::auth::{AuthUser, Jwks, TokenIssuer, TokenVerifier};
use silo_kit::correlation::CorrelationId;
use silo_kit::error::{ApiError, ProblemType};
use silo_kit::extract::{Json, Path};
use silo_kit::fields::{BodyFields, FromBody};
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
        .route("/openapi.json", silo_kit::openapi::serve(&openapi()))
}

/// The handlers and types the OpenAPI description is generated from.
#[derive(utoipa::OpenApi)]
#[openapi(paths(register, login, get_user, update_user, user_exists, jwks))]
struct ApiDoc;

/// user-service's OpenAPI 3.1 description (`GET /openapi.json`, `docs/openapi/user-service.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    silo_kit::openapi::complete(
        <ApiDoc as utoipa::OpenApi>::openapi(),
        crate::startup::SERVICE.name,
        PROBLEM_TYPES,
    )
}

/// 401: no user has this username or email and password.
pub const INVALID_CREDENTIALS: ProblemType = ProblemType::new(
    "invalid-credentials",
    "Invalid credentials",
    StatusCode::UNAUTHORIZED,
);
/// 409: another user has this username (compared case-insensitively).
pub const USERNAME_TAKEN: ProblemType =
    ProblemType::new("username-taken", "Username taken", StatusCode::CONFLICT);
/// 409: another user has this email (compared case-insensitively).
pub const EMAIL_TAKEN: ProblemType =
    ProblemType::new("email-taken", "Email taken", StatusCode::CONFLICT);
/// 400: a change request that changes nothing.
pub const NOTHING_TO_UPDATE: ProblemType = ProblemType::new(
    "nothing-to-update",
    "Nothing to update",
    StatusCode::BAD_REQUEST,
);

/// The problem types of user-service beyond the kit's [`ProblemType::SHARED`].
pub const PROBLEM_TYPES: &[ProblemType] = &[
    INVALID_CREDENTIALS,
    USERNAME_TAKEN,
    EMAIL_TAKEN,
    NOTHING_TO_UPDATE,
];

/// `POST /api/users/register` body, validated: every field at fault is reported at once.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Registration {
    /// 3–50 of `[A-Za-z0-9_.-]`.
    #[schema(value_type = String, min_length = 3, max_length = 50, pattern = "^[A-Za-z0-9_.-]+$")]
    pub username: Username,
    /// Email address.
    #[schema(value_type = String, max_length = 254, example = "ada@example.com")]
    pub email: Email,
    /// 8–128 characters (its `Debug` is redacted).
    #[schema(value_type = String, min_length = 8, max_length = 128)]
    pub password: Password,
    /// Display name, 1–200 characters (surrounding whitespace is trimmed).
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub full_name: FullName,
}

impl FromBody for Registration {
    const FIELDS: &'static [&'static str] = &["username", "email", "password", "fullName"];

    fn from_body(body: &mut BodyFields) -> Option<Self> {
        let username = body.required_with("username", |raw: String| Username::parse(&raw));
        let email = body.required_with("email", |raw: String| Email::parse(&raw));
        let password = body.required_with("password", |raw: String| Password::parse(&raw));
        let full_name = body.required_with("fullName", |raw: String| FullName::parse(&raw));
        Some(Self {
            username: username?,
            email: email?,
            password: password?,
            full_name: full_name?,
        })
    }
}

/// `POST /api/users/login` body.
#[derive(utoipa::ToSchema)]
pub struct LoginRequest {
    /// Username or email.
    pub username: String,
    /// Password.
    pub password: String,
}

impl FromBody for LoginRequest {
    const FIELDS: &'static [&'static str] = &["username", "password"];

    fn from_body(body: &mut BodyFields) -> Option<Self> {
        let username = body.required("username");
        let password = body.required("password");
        Some(Self {
            username: username?,
            password: password?,
        })
    }
}

/// Shown instead of a password by the hand-written `Debug` impl.
const REDACTED: &str = "<redacted>";

// Debug by hand: a derived impl would print the plaintext password into any
// log line or panic message that formats the request.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identifier too: users type their password into it by mistake.
        f.debug_struct("LoginRequest")
            .field("username", &REDACTED)
            .field("password", &REDACTED)
            .finish()
    }
}

/// `PATCH /api/users/{id}` body, validated; at least one field is checked by the handler.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct UserChanges {
    /// New email.
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Option<Email>,
    /// New full name, 1–200 characters.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub full_name: Option<FullName>,
}

impl FromBody for UserChanges {
    const FIELDS: &'static [&'static str] = &["email", "fullName"];

    fn from_body(body: &mut BodyFields) -> Option<Self> {
        Some(Self {
            email: body.optional_with("email", |raw: String| Email::parse(&raw)),
            full_name: body.optional_with("fullName", |raw: String| FullName::parse(&raw)),
        })
    }
}

/// A user as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
                ApiError::new(USERNAME_TAKEN, "Another user already has this username.")
                    .with_error("username", "username is already taken")
            }
            RepositoryError::EmailTaken => {
                ApiError::new(EMAIL_TAKEN, "Another user already has this email address.")
                    .with_error("email", "email is already registered")
            }
            RepositoryError::NotFound => ApiError::not_found("There is no user with this id."),
            other => ApiError::internal(other),
        }
    }
}

impl From<password::PasswordError> for ApiError {
    fn from(error: password::PasswordError) -> Self {
        match error {
            password::PasswordError::Overloaded => ApiError::new(
                ProblemType::OVERLOADED,
                "Too many sign-ups and logins are in progress; retry in a moment.",
            ),
            other => ApiError::internal(other),
        }
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(INVALID_CREDENTIALS, "The username or password is wrong.")
}

/// Registers a user.
#[utoipa::path(post, path = "/api/users/register", tag = "users", request_body = Registration,
    responses(
        (status = 201, description = "Registered; emits `UserRegistered`", body = UserResponse,
            headers(("Location" = String, description = "/api/users/{id}"))),
        (status = 409, description = "`username-taken` or `email-taken` (case-insensitive); `errors` names the field"),
        (status = 503, description = "`overloaded`: too many password hashes at once"),
    ))]
async fn register(
    State(state): State<ApiState>,
    correlation_id: CorrelationId,
    Json(registration): Json<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    let Registration {
        username,
        email,
        password,
        full_name,
    } = registration;
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

/// Signs a user in: a token for the other services.
#[utoipa::path(post, path = "/api/users/login", tag = "users", request_body = LoginRequest,
    responses(
        (status = 200, description = "A token (EdDSA JWT) and the user", body = LoginResponse),
        (status = 401, description = "`invalid-credentials`: the same for an unknown user and a wrong password"),
        (status = 503, description = "`overloaded`: too many password hashes at once"),
    ))]
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
        Err(ApiError::forbidden("You may only access your own user."))
    }
}

/// A user, to themselves or an admin.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 403, description = "`forbidden`: another user, and the caller is no admin"),
        (status = 404, description = "`not-found`: no user has this id"),
    ))]
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
        .ok_or_else(|| ApiError::not_found("There is no user with this id."))?;
    Ok(Json(user.into()))
}

/// Whether a user exists (for the other services).
#[utoipa::path(get, path = "/api/users/{id}/exists", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "`{\"exists\": true}`", body = Object, example = json!({"exists": true})),
        (status = 404, description = "`not-found`: no user has this id"),
    ))]
async fn user_exists(
    _caller: AuthUser,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state.repository.exists(id).await? {
        Ok(Json(serde_json::json!({ "exists": true })))
    } else {
        Err(ApiError::not_found("There is no user with this id."))
    }
}

/// Changes a user's email or full name.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = UserChanges,
    responses(
        (status = 200, description = "The changed user; emits `UserEmailChanged` when the email changes", body = UserResponse),
        (status = 400, description = "`nothing-to-update`: neither email nor fullName"),
        (status = 403, description = "`forbidden`: another user, and the caller is no admin"),
        (status = 404, description = "`not-found`: no user has this id"),
        (status = 409, description = "`email-taken`: another user has this email"),
    ))]
async fn update_user(
    caller: AuthUser,
    State(state): State<ApiState>,
    correlation_id: CorrelationId,
    Path(id): Path<Uuid>,
    Json(changes): Json<UserChanges>,
) -> Result<Json<UserResponse>, ApiError> {
    require_access(&caller, id)?;
    let UserChanges { email, full_name } = changes;
    if email.is_none() && full_name.is_none() {
        return Err(ApiError::new(
            NOTHING_TO_UPDATE,
            "Provide at least one of email, fullName.",
        ));
    }
    let user = state
        .repository
        .update(id, email, full_name, &correlation_id)
        .await?;
    tracing::info!(user_id = %user.id, by = %caller.id, "user updated");
    Ok(Json(user.into()))
}

/// The public keys that verify user-service's tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "users",
    responses((status = 200, description = "The JWKS (Ed25519 `OKP` keys, `kid` = RFC 7638 thumbprint)", body = Jwks)))]
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
        let register = Registration {
            username: Username::parse("ada").unwrap(),
            email: Email::parse("ada@example.com").unwrap(),
            password: Password::parse("hunter2-secret").unwrap(),
            full_name: FullName::parse("Ada").unwrap(),
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
        assert_eq!(error.problem(), ProblemType::OVERLOADED);
        let error = ApiError::from(password::PasswordError::Task);
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn every_problem_type_is_documented() {
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/services.md"
        ))
        .unwrap();
        let missing =
            silo_kit::error::undocumented(ProblemType::SHARED.iter().chain(PROBLEM_TYPES), &docs);
        assert!(
            missing.is_empty(),
            "docs/services.md does not list {missing:?}"
        );
    }

    #[test]
    fn every_route_is_in_the_openapi_description() {
        let problems =
            silo_kit::openapi::description_problems(&routes(), &openapi(), "GET /api/users/{id}");
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn request_schemas_match_what_the_readers_accept() {
        use silo_kit::openapi::body_fields_mismatch;
        assert_eq!(body_fields_mismatch::<Registration>(), Vec::<String>::new());
        assert_eq!(body_fields_mismatch::<LoginRequest>(), Vec::<String>::new());
        assert_eq!(body_fields_mismatch::<UserChanges>(), Vec::<String>::new());
    }

    #[test]
    fn the_committed_openapi_description_is_current() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi/user-service.json"
        ));
        if let Some(stale) = silo_kit::openapi::stale_file(&openapi(), path) {
            panic!("{stale}");
        }
    }
}

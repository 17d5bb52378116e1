//! Every error response is an RFC 9457 problem (`application/problem+json`):
//!
//! ```json
//! {"type": "https://silo.dev/problems/validation-failed", "title": "Invalid request",
//!  "status": 400, "detail": "The request has 2 invalid fields: eventName, ticketCount.",
//!  "errors": [{"field": "eventName", "message": "eventName is required"}, …]}
//! ```
//!
//! `type` is a stable URI per kind of error ([`ProblemType`]); clients branch on
//! it, never on `detail`. `title` is fixed per type, `detail` explains this
//! occurrence in plain words, and `errors` (present only when non-empty) lists
//! every invalid request field at once. Client errors (4xx) explain what is
//! wrong; server errors built with [`ApiError::internal`] show clients an
//! opaque detail and log the cause exactly once, when the response is produced.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What every problem type URI starts with; the type's slug follows.
pub const PROBLEM_TYPE_BASE: &str = "https://silo.dev/problems/";

/// The realm of every `WWW-Authenticate` challenge.
const REALM: &str = "silo";

/// Most field errors one response lists (the body limit bounds the request,
/// this bounds the answer to a request made of thousands of unknown fields).
const MAX_FIELD_ERRORS: usize = 50;

/// A kind of error: a stable type URI, a fixed title and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    slug: &'static str,
    title: &'static str,
    status: StatusCode,
}

impl ProblemType {
    /// A problem type `https://silo.dev/problems/<slug>`.
    pub const fn new(slug: &'static str, title: &'static str, status: StatusCode) -> Self {
        Self {
            slug,
            title,
            status,
        }
    }

    /// The body is not syntactically JSON.
    pub const MALFORMED_JSON: Self =
        Self::new("malformed-json", "Malformed JSON", StatusCode::BAD_REQUEST);
    /// The body is JSON but not an object (an array, a string, ...).
    pub const BODY_NOT_OBJECT: Self = Self::new(
        "body-not-object",
        "Request body is not a JSON object",
        StatusCode::BAD_REQUEST,
    );
    /// Fields of the body, query parameters or path parameters are missing,
    /// unknown, of the wrong type or out of range; `errors` lists them all.
    pub const VALIDATION_FAILED: Self = Self::new(
        "validation-failed",
        "Invalid request",
        StatusCode::BAD_REQUEST,
    );
    /// The body is over the endpoint's limit.
    pub const PAYLOAD_TOO_LARGE: Self = Self::new(
        "payload-too-large",
        "Request body too large",
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    /// The body is not declared as JSON.
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self::new(
        "unsupported-media-type",
        "Unsupported media type",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    /// No bearer token was presented.
    pub const UNAUTHENTICATED: Self = Self::new(
        "unauthenticated",
        "Authentication required",
        StatusCode::UNAUTHORIZED,
    );
    /// A bearer token was presented and rejected (malformed, expired, forged).
    pub const INVALID_TOKEN: Self =
        Self::new("invalid-token", "Invalid token", StatusCode::UNAUTHORIZED);
    /// The caller is authenticated but may not do this.
    pub const FORBIDDEN: Self = Self::new("forbidden", "Forbidden", StatusCode::FORBIDDEN);
    /// No such resource, or no such endpoint.
    pub const NOT_FOUND: Self = Self::new("not-found", "Not found", StatusCode::NOT_FOUND);
    /// The endpoint exists but not with this method (`Allow` lists the methods).
    pub const METHOD_NOT_ALLOWED: Self = Self::new(
        "method-not-allowed",
        "Method not allowed",
        StatusCode::METHOD_NOT_ALLOWED,
    );
    /// The request took longer than the server allows.
    pub const REQUEST_TIMEOUT: Self = Self::new(
        "request-timeout",
        "Request timeout",
        StatusCode::REQUEST_TIMEOUT,
    );
    /// The service is at capacity; retry shortly.
    pub const OVERLOADED: Self = Self::new(
        "overloaded",
        "Service overloaded",
        StatusCode::SERVICE_UNAVAILABLE,
    );
    /// A token cannot be verified because user-service's keys cannot be fetched.
    pub const AUTH_UNAVAILABLE: Self = Self::new(
        "auth-unavailable",
        "Token verification unavailable",
        StatusCode::SERVICE_UNAVAILABLE,
    );
    /// A server error; the cause is in the service's log, not in the response.
    pub const INTERNAL: Self = Self::new(
        "internal",
        "Internal server error",
        StatusCode::INTERNAL_SERVER_ERROR,
    );

    /// The problem types every service may answer with (the kit's).
    pub const SHARED: &'static [Self] = &[
        Self::MALFORMED_JSON,
        Self::BODY_NOT_OBJECT,
        Self::VALIDATION_FAILED,
        Self::PAYLOAD_TOO_LARGE,
        Self::UNSUPPORTED_MEDIA_TYPE,
        Self::UNAUTHENTICATED,
        Self::INVALID_TOKEN,
        Self::FORBIDDEN,
        Self::NOT_FOUND,
        Self::METHOD_NOT_ALLOWED,
        Self::REQUEST_TIMEOUT,
        Self::OVERLOADED,
        Self::AUTH_UNAVAILABLE,
        Self::INTERNAL,
    ];

    /// The last segment of the type URI (`validation-failed`).
    pub const fn slug(&self) -> &'static str {
        self.slug
    }

    /// The fixed, human-readable summary.
    pub const fn title(&self) -> &'static str {
        self.title
    }

    /// The HTTP status every problem of this type has.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The type URI (`https://silo.dev/problems/validation-failed`).
    pub fn uri(&self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.slug)
    }
}

/// The URIs of those of `types` whose slug `docs` does not name (as `` `slug` ``): each
/// service's tests hold its problem types against docs/services.md with it.
pub fn undocumented<'a>(
    types: impl IntoIterator<Item = &'a ProblemType>,
    docs: &str,
) -> Vec<String> {
    types
        .into_iter()
        .filter(|problem| !docs.contains(&format!("`{}`", problem.slug())))
        .map(ProblemType::uri)
        .collect()
}

/// One invalid request field: a body member, a query or a path parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name as the client spells it (`eventName`, `limit`, `id`).
    pub field: String,
    /// What is wrong with it, in plain words.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The wire shape of an error body (RFC 9457 members plus `errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// The problem type URI.
    #[serde(rename = "type")]
    #[schema(example = "https://silo.dev/problems/validation-failed")]
    pub type_uri: String,
    /// The type's fixed title.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// This occurrence, in plain words.
    pub detail: String,
    /// Every invalid request field; omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error response: a [`ProblemType`], a detail and the invalid fields.
pub struct ApiError {
    problem: ProblemType,
    detail: String,
    errors: Vec<FieldError>,
    /// The `error` and `error_description` of a bearer challenge (RFC 6750).
    token_error: Option<&'static str>,
    cause: Option<anyhow::Error>,
}

impl ApiError {
    /// An error of type `problem` explained by `detail`.
    pub fn new(problem: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem,
            detail: detail.into(),
            errors: Vec::new(),
            token_error: None,
            cause: None,
        }
    }

    /// Adds an invalid field to `errors`.
    pub fn with_error(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError::new(field, message));
        self
    }

    /// Attaches a cause that is logged (never sent) when the response is produced.
    pub fn with_cause(mut self, cause: impl Into<anyhow::Error>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// 400 `validation-failed` listing `errors` (every invalid field of the request).
    pub fn invalid_fields(mut errors: Vec<FieldError>) -> Self {
        let count = errors.len();
        errors.truncate(MAX_FIELD_ERRORS);
        let mut names: Vec<&str> = Vec::new();
        for error in &errors {
            if !names.contains(&error.field.as_str()) {
                names.push(&error.field);
            }
        }
        let detail = match count {
            0 => "The request is invalid.".to_string(),
            1 => format!("The request has an invalid field: {}.", names.join(", ")),
            n if n > MAX_FIELD_ERRORS => format!(
                "The request has {n} invalid fields; the first {MAX_FIELD_ERRORS} are listed: {}.",
                names.join(", ")
            ),
            n => format!("The request has {n} invalid fields: {}.", names.join(", ")),
        };
        Self {
            errors,
            ..Self::new(ProblemType::VALIDATION_FAILED, detail)
        }
    }

    /// 400 `validation-failed` on one field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldError::new(field, message)])
    }

    /// 401 `unauthenticated`: no bearer token was presented.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::UNAUTHENTICATED, detail)
    }

    /// 401 `invalid-token`: the presented token was rejected; `reason` (a fixed
    /// phrase, never the token) is also the challenge's `error_description`.
    pub fn invalid_token(reason: &'static str) -> Self {
        Self {
            token_error: Some(reason),
            ..Self::new(ProblemType::INVALID_TOKEN, reason)
        }
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::FORBIDDEN, detail)
    }

    /// 404 `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::NOT_FOUND, detail)
    }

    /// 413 `payload-too-large`.
    pub fn payload_too_large() -> Self {
        Self::new(
            ProblemType::PAYLOAD_TOO_LARGE,
            "The request body is larger than this endpoint accepts.",
        )
    }

    /// 500 `internal`: the client sees an opaque detail; `cause` is logged once.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(
            ProblemType::INTERNAL,
            "The server failed to handle the request.",
        )
        .with_cause(cause)
    }

    /// The problem type.
    pub fn problem(&self) -> ProblemType {
        self.problem
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.problem.status()
    }

    /// The detail sent to the client.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The invalid fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The first invalid field, if any.
    pub fn field(&self) -> Option<&str> {
        self.errors.first().map(|error| error.field.as_str())
    }

    /// The body sent to the client.
    pub fn to_problem(&self) -> Problem {
        Problem {
            type_uri: self.problem.uri(),
            title: self.problem.title().to_string(),
            status: self.status().as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }

    /// The `WWW-Authenticate` challenge a 401 carries (RFC 6750 §3).
    fn challenge(&self) -> String {
        match self.token_error {
            Some(reason) => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\""
            ),
            None => format!("Bearer realm=\"{REALM}\""),
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status().as_u16())
            .field("type", &self.problem.slug())
            .field("detail", &self.detail)
            .field("errors", &self.errors)
            .field("cause", &self.cause.as_ref().map(|c| format!("{c:#}")))
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.problem.slug(),
            self.detail
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem.slug();
        if self.status().is_server_error() {
            match &self.cause {
                Some(cause) => {
                    tracing::error!(problem, error = format!("{cause:#}"), "request failed")
                }
                None => tracing::error!(problem, detail = %self.detail, "request failed"),
            }
        } else if let Some(cause) = &self.cause {
            tracing::debug!(problem, error = format!("{cause:#}"), "request rejected");
        }
        let body = match serde_json::to_vec(&self.to_problem()) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "problem body could not be encoded");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        if self.status() == StatusCode::UNAUTHORIZED
            && let Ok(challenge) = HeaderValue::from_str(&self.challenge())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn respond(error: ApiError) -> (Response, serde_json::Value) {
        let response = error.into_response();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, 1 << 16).await.unwrap();
        (
            Response::from_parts(parts, axum::body::Body::empty()),
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_validation_error_is_a_problem_listing_the_field() {
        let (response, body) = respond(ApiError::validation(
            "email",
            "email is not a valid address",
        ))
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            body,
            serde_json::json!({
                "type": "https://silo.dev/problems/validation-failed",
                "title": "Invalid request",
                "status": 400,
                "detail": "The request has an invalid field: email.",
                "errors": [{"field": "email", "message": "email is not a valid address"}],
            })
        );
    }

    #[tokio::test]
    async fn every_invalid_field_is_listed_and_named_once_in_the_detail() {
        let error = ApiError::invalid_fields(vec![
            FieldError::new("eventName", "eventName is required"),
            FieldError::new("ticketCount", "ticketCount must be a whole number"),
            FieldError::new("ticketCount", "ticketCount is given more than once"),
        ]);
        let (_, body) = respond(error).await;
        assert_eq!(body["errors"].as_array().unwrap().len(), 3);
        assert_eq!(
            body["detail"],
            "The request has 3 invalid fields: eventName, ticketCount."
        );
    }

    #[tokio::test]
    async fn an_internal_error_hides_its_cause_from_the_client() {
        let (response, body) = respond(ApiError::internal(anyhow::anyhow!(
            "password=hunter2 refused"
        )))
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({
                "type": "https://silo.dev/problems/internal",
                "title": "Internal server error",
                "status": 500,
                "detail": "The server failed to handle the request.",
            })
        );
    }

    #[tokio::test]
    async fn a_401_challenges_for_a_bearer_token() {
        let (response, body) = respond(ApiError::unauthenticated("a token is required")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"silo\""
        );
        assert_eq!(body["type"], "https://silo.dev/problems/unauthenticated");
        let (response, body) = respond(ApiError::invalid_token("token expired")).await;
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"silo\", error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(body["type"], "https://silo.dev/problems/invalid-token");
        assert_eq!(body["detail"], "token expired");
    }

    #[test]
    fn shared_problem_types_have_distinct_slugs() {
        let mut slugs: Vec<&str> = ProblemType::SHARED.iter().map(|p| p.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemType::SHARED.len());
    }
}

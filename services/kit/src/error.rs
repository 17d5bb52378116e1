//! The JSON error every endpoint returns: `{"error":{"code","message","field"?}}`.
//!
//! Client errors (4xx) explain what is wrong; server errors (5xx) built with
//! [`ApiError::internal`] show clients an opaque message and log the cause
//! exactly once, when the response is produced.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// An HTTP error with a machine-readable code and a human-readable message.
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    field: Option<String>,
    cause: Option<anyhow::Error>,
}

/// The wire shape of an error body.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`validation_failed`, `not_found`, ...).
    pub code: String,
    /// Explanation for a human.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with any status, code and message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            cause: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Attaches a cause that is logged (never sent) when the response is produced.
    pub fn with_cause(mut self, cause: impl Into<anyhow::Error>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// 400 `validation_failed` on `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message).with_field(field)
    }

    /// 400 with a specific code.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 with a specific code.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is larger than this endpoint accepts",
        )
    }

    /// 503 with a message the client may see (a dependency is down).
    pub fn unavailable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 500 `internal`: the client sees an opaque message; `cause` is logged once.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
        .with_cause(cause)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("message", &self.message)
            .field("field", &self.field)
            .field("cause", &self.cause.as_ref().map(|c| format!("{c:#}")))
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.cause {
                Some(cause) => {
                    tracing::error!(code = %self.code, error = format!("{cause:#}"), "request failed")
                }
                None => {
                    tracing::error!(code = %self.code, message = %self.message, "request failed")
                }
            }
        } else if let Some(cause) = &self.cause {
            tracing::debug!(code = %self.code, error = format!("{cause:#}"), "request rejected");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into_owned(),
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn validation_error_names_the_field() {
        let (status, body) = body_of(ApiError::validation("email", "email is not valid")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            serde_json::json!({"error":{"code":"validation_failed","message":"email is not valid","field":"email"}})
        );
    }

    #[tokio::test]
    async fn internal_error_hides_its_cause_from_the_client() {
        let (status, body) = body_of(ApiError::internal(anyhow::anyhow!(
            "password=hunter2 refused"
        )))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({"error":{"code":"internal","message":"internal server error"}})
        );
    }
}

//! Extractors whose rejections are [`ApiError`]s, so malformed requests get
//! the same JSON error body as every other failure.
//!
//! Request types should use `#[serde(deny_unknown_fields)]`: an unknown field
//! is then a 400 naming the field.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A JSON body (request) or JSON response; rejections become [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection_to_error(&rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

const DATA_ERROR_PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";

/// Maps axum's JSON rejection to the service error format.
pub fn json_rejection_to_error(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::payload_too_large();
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", "request body is not valid JSON")
        }
        JsonRejection::JsonDataError(_) => {
            let text = rejection.body_text();
            let detail = text.strip_prefix(DATA_ERROR_PREFIX).unwrap_or(&text);
            let error = ApiError::bad_request("invalid_body", detail.to_string());
            match field_of_data_error(detail) {
                Some(field) => error.with_field(field),
                None => error,
            }
        }
        _ => ApiError::bad_request("invalid_body", "request body could not be read"),
    }
}

/// The field a serde data error is about: the named field for unknown or
/// missing fields, else the path that `serde_path_to_error` puts in front.
fn field_of_data_error(detail: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(start) = detail.find(marker) {
            let rest = &detail[start + marker.len()..];
            let name = rest.split('`').next()?;
            let prefix = detail[..start].trim_end_matches(": ").trim();
            let already_named = prefix == name || prefix.ends_with(&format!(".{name}"));
            return Some(if prefix.is_empty() || prefix == "." {
                name.to_string()
            } else if already_named {
                prefix.to_string()
            } else {
                format!("{prefix}.{name}")
            });
        }
    }
    let (path, _) = detail.split_once(": ")?;
    (!path.is_empty() && path != "." && !path.contains(' ')).then(|| path.to_string())
}

/// A path parameter; a value of the wrong shape (not a UUID, ...) is a 400.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection_to_error(&rejection)),
        }
    }
}

fn path_rejection_to_error(rejection: &PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(_) => {
            ApiError::bad_request("invalid_path", rejection.body_text())
        }
        _ => ApiError::internal(anyhow::anyhow!(
            "path extraction failed: {}",
            rejection.body_text()
        )),
    }
}

/// A query string; malformed parameters are a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection_to_error(&rejection)),
        }
    }
}

fn query_rejection_to_error(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Register {
        user_name: String,
        age: u32,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/",
                post(|Json(body): Json<Register>| async move { Json(body) }),
            )
            .layer(DefaultBodyLimit::max(64))
    }

    async fn send(content_type: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let mut request = axum::http::Request::post("/");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = app()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn valid_body_is_accepted() {
        let (status, body) = send(Some("application/json"), r#"{"userName":"a","age":3}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["userName"], "a");
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_in_the_error_format() {
        let (status, body) = send(Some("application/json"), r#"{"userName":"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "malformed_json");
    }

    #[tokio::test]
    async fn unknown_field_is_a_400_naming_the_field() {
        let (status, body) = send(
            Some("application/json"),
            r#"{"userName":"a","age":3,"isAdmin":true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_body");
        assert_eq!(body["error"]["field"], "isAdmin");
    }

    #[tokio::test]
    async fn missing_field_is_a_400_naming_the_field() {
        let (status, body) = send(Some("application/json"), r#"{"userName":"a"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["field"], "age");
    }

    #[tokio::test]
    async fn wrong_type_is_a_400_naming_the_field() {
        let (status, body) = send(Some("application/json"), r#"{"userName":"a","age":"x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["field"], "age");
    }

    #[tokio::test]
    async fn wrong_content_type_is_a_415() {
        let (status, body) = send(Some("text/plain"), r#"{"userName":"a","age":3}"#).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["error"]["code"], "unsupported_media_type");
        let (status, _) = send(None, r#"{"userName":"a","age":3}"#).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn oversized_body_is_a_413_in_the_error_format() {
        let big = format!(r#"{{"userName":"{}","age":3}}"#, "x".repeat(200));
        let (status, body) = send(Some("application/json"), &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
}

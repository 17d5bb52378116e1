//! Extractors whose rejections are problems ([`ApiError`]), in plain words:
//! no Rust type name or parser message ever reaches a client.
//!
//! - [`Json<T>`] reads a body declared as JSON (`application/json` or
//!   `application/*+json`, else 415) within the body limit (else 413). Not
//!   JSON: 400 `malformed-json` with line and column. JSON but not an object
//!   (an array, a string, ...): 400 `body-not-object`. Then `T` ([`FromBody`])
//!   reads its members and every invalid, missing, unknown or repeated one is
//!   listed in one 400 `validation-failed`.
//! - [`Query<T>`] reads the query string with [`FromQuery`], the same way.
//! - [`Path<T>`] reads a route's one path parameter (`{id}`); a value that is
//!   not a `T` is a 400 `validation-failed` naming the parameter.

use crate::error::{ApiError, ProblemType};
use crate::fields::{FieldValue, FromBody, FromQuery, read_body, read_query};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// A JSON request body read as `T`, or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: FromBody,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !declares_json(req.headers()) {
            return Err(ApiError::new(
                ProblemType::UNSUPPORTED_MEDIA_TYPE,
                "The request body must be JSON, sent with Content-Type: application/json.",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::new(
                    ProblemType::MALFORMED_JSON,
                    "The request body could not be read.",
                )
            }
        })?;
        read_body(object_members(&bytes)?).map(Self)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Whether the request's `Content-Type` is `application/json` or `application/<x>+json`.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some(subtype) = essence
        .split_once('/')
        .filter(|(kind, _)| kind.eq_ignore_ascii_case("application"))
        .map(|(_, subtype)| subtype.to_ascii_lowercase())
    else {
        return false;
    };
    subtype == "json" || subtype.ends_with("+json")
}

/// The members of a JSON object, values kept as their raw text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The members of the JSON object `bytes` holds; a problem when it holds something else.
fn object_members(bytes: &[u8]) -> Result<Vec<(String, Box<RawValue>)>, ApiError> {
    match serde_json::from_slice::<Members>(bytes) {
        Ok(Members(members)) => Ok(members),
        Err(error) if error.classify() == serde_json::error::Category::Data => Err(ApiError::new(
            ProblemType::BODY_NOT_OBJECT,
            format!(
                "The request body must be a JSON object, not {}.",
                json_kind(bytes)
            ),
        )),
        Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => Err(ApiError::new(
            ProblemType::MALFORMED_JSON,
            "The request body is empty; a JSON object is expected.",
        )),
        Err(error) => Err(ApiError::new(
            ProblemType::MALFORMED_JSON,
            format!(
                "The request body is not valid JSON (line {}, column {}).",
                error.line(),
                error.column()
            ),
        )),
    }
}

/// What kind of JSON value `bytes` (valid JSON, not an object) holds, in words.
fn json_kind(bytes: &[u8]) -> &'static str {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A query string read as `T` ([`FromQuery`]); an absent query is an empty one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: FromQuery,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        read_query(pairs).map(Self)
    }
}

/// The one path parameter of a route (`/api/bookings/{id}`) read as `T`.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: FieldValue<String> + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = |name: &str| {
            ApiError::validation(
                name,
                format!("the path parameter {name} must be {}", T::EXPECTED),
            )
        };
        let params = match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => params,
            // Percent-encoded bytes that are not UTF-8: not a `T` either.
            Err(axum::extract::rejection::RawPathParamsRejection::InvalidUtf8InPathParam(_)) => {
                return Err(invalid(&parameter_of_route(parts)));
            }
            Err(other) => {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "path parameters unavailable: {}",
                    other.body_text()
                )));
            }
        };
        let mut params = params.iter();
        let (Some((name, value)), None) = (params.next(), params.next()) else {
            return Err(ApiError::internal(anyhow::anyhow!(
                "Path<T> is for routes with exactly one parameter"
            )));
        };
        T::from_raw(&value.to_string())
            .map(Self)
            .ok_or_else(|| invalid(name))
    }
}

/// The name of the matched route's parameter (`id` of `/api/bookings/{id}`).
fn parameter_of_route(parts: &Parts) -> String {
    parts
        .extensions
        .get::<MatchedPath>()
        .and_then(|path| {
            let (_, rest) = path.as_str().split_once('{')?;
            rest.split_once('}').map(|(name, _)| name.to_string())
        })
        .unwrap_or_else(|| "path".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{BodyFields, QueryFields};
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    use rust_decimal::Decimal;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use uuid::Uuid;

    /// A body with one field of each kind the services read.
    struct Order {
        name: String,
        count: i64,
        amount: Decimal,
    }

    impl FromBody for Order {
        const FIELDS: &'static [&'static str] = &["name", "count", "amount"];

        fn from_body(body: &mut BodyFields) -> Option<Self> {
            let name = body.required("name");
            let count = body.required("count");
            let amount = body.required("amount");
            Some(Self {
                name: name?,
                count: count?,
                amount: amount?,
            })
        }
    }

    struct Page {
        limit: Option<u32>,
    }

    impl FromQuery for Page {
        const PARAMETERS: &'static [&'static str] = &["limit"];

        fn from_query(query: &mut QueryFields) -> Option<Self> {
            Some(Self {
                limit: query.optional("limit"),
            })
        }
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/orders",
                post(|Json(order): Json<Order>| async move {
                    Json(json!({
                        "name": order.name, "count": order.count, "amount": order.amount.to_string()
                    }))
                }),
            )
            .route(
                "/orders/{id}",
                get(|Path(id): Path<Uuid>| async move { id.to_string() }),
            )
            .route(
                "/pages",
                get(|Query(page): Query<Page>| async move { format!("{:?}", page.limit) }),
            )
            .layer(DefaultBodyLimit::max(128))
    }

    async fn call(request: axum::http::Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, body)
    }

    async fn post_body(content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut request = axum::http::Request::post("/orders");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, headers, body) =
            call(request.body(Body::from(body.to_string())).unwrap()).await;
        if !status.is_success() {
            assert_eq!(headers["content-type"], "application/problem+json");
            assert_eq!(body["status"], status.as_u16());
        }
        (status, body)
    }

    async fn get_uri(uri: &str) -> (StatusCode, Value) {
        let (status, _, body) =
            call(axum::http::Request::get(uri).body(Body::empty()).unwrap()).await;
        (status, body)
    }

    /// Field names and messages of a problem's `errors`.
    fn errors_of(body: &Value) -> Vec<(String, String)> {
        body["errors"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_string(),
                    e["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Words of Rust and serde that must never reach a client.
    fn assert_plain_words(body: &Value) {
        let text = body.to_string();
        for internal in [
            "expected",
            "struct",
            "i64",
            "u32",
            "Uuid",
            "serde",
            "deserialize",
            "`",
        ] {
            assert!(!text.contains(internal), "{internal} leaked: {text}");
        }
    }

    #[tokio::test]
    async fn a_valid_body_is_read() {
        let (status, body) = post_body(
            Some("application/json; charset=utf-8"),
            r#"{"name":"a","count":3,"amount":"12.50"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"name": "a", "count": 3, "amount": "12.50"}));
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_malformed_json_with_its_position() {
        let (status, body) = post_body(Some("application/json"), "{\"name\":").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["type"], "https://silo.dev/problems/malformed-json");
        assert_eq!(body["title"], "Malformed JSON");
        assert_eq!(
            body["detail"],
            "The request body is not valid JSON (line 1, column 8)."
        );
        let (_, body) = post_body(Some("application/json"), "  ").await;
        assert_eq!(
            body["detail"],
            "The request body is empty; a JSON object is expected."
        );
    }

    #[tokio::test]
    async fn an_array_or_scalar_body_is_not_an_object() {
        for (json, kind) in [
            (r#"["a",3,"12.50"]"#, "an array"),
            (r#""a""#, "a string"),
            ("12", "a number"),
            ("null", "null"),
        ] {
            let (status, body) = post_body(Some("application/json"), json).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
            assert_eq!(body["type"], "https://silo.dev/problems/body-not-object");
            assert_eq!(
                body["detail"],
                format!("The request body must be a JSON object, not {kind}.")
            );
        }
    }

    #[tokio::test]
    async fn wrong_types_missing_and_unknown_fields_are_listed_together_in_plain_words() {
        let (status, body) = post_body(
            Some("application/json"),
            r#"{"name": 5, "amount": 1.5, "isAdmin": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["type"], "https://silo.dev/problems/validation-failed");
        assert_eq!(
            errors_of(&body),
            [
                (
                    "isAdmin".to_string(),
                    "isAdmin is not a field this endpoint accepts (it accepts: name, count, amount)"
                        .to_string()
                ),
                ("name".to_string(), "name must be a string".to_string()),
                ("count".to_string(), "count is required".to_string()),
            ]
        );
        assert_plain_words(&body);
        let (_, body) = post_body(
            Some("application/json"),
            r#"{"name":"a","count":"3","amount":[1]}"#,
        )
        .await;
        let fields: Vec<String> = errors_of(&body).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["count", "amount"]);
        assert_plain_words(&body);
    }

    #[tokio::test]
    async fn a_body_not_declared_as_json_is_a_415() {
        let body = r#"{"name":"a","count":3,"amount":1}"#;
        for content_type in [Some("text/plain"), None, Some("application/jsonx")] {
            let (status, problem) = post_body(content_type, body).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type:?}"
            );
            assert_eq!(
                problem["type"],
                "https://silo.dev/problems/unsupported-media-type"
            );
        }
        let (status, _) = post_body(Some("application/merge-patch+json"), body).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413() {
        let big = format!(r#"{{"name":"{}","count":3,"amount":1}}"#, "x".repeat(200));
        let (status, body) = post_body(Some("application/json"), &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["type"], "https://silo.dev/problems/payload-too-large");
    }

    #[tokio::test]
    async fn a_path_parameter_of_the_wrong_shape_names_the_parameter() {
        let id = Uuid::new_v4();
        assert_eq!(get_uri(&format!("/orders/{id}")).await.0, StatusCode::OK);
        for bad in ["xyz", "%FF%FE"] {
            let (status, body) = get_uri(&format!("/orders/{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(body["type"], "https://silo.dev/problems/validation-failed");
            assert_eq!(
                errors_of(&body),
                [(
                    "id".to_string(),
                    "the path parameter id must be a UUID".to_string()
                )]
            );
            assert_plain_words(&body);
        }
    }

    #[tokio::test]
    async fn a_bad_query_lists_every_parameter_at_fault() {
        assert_eq!(
            get_uri("/pages?limit=5").await,
            (StatusCode::OK, json!("Some(5)"))
        );
        assert_eq!(get_uri("/pages").await, (StatusCode::OK, json!("None")));
        let (status, body) = get_uri("/pages?limit=ten&colour=red&limit=2").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["type"], "https://silo.dev/problems/validation-failed");
        assert_eq!(
            errors_of(&body),
            [
                (
                    "colour".to_string(),
                    "colour is not a query parameter this endpoint accepts (it accepts: limit)"
                        .to_string()
                ),
                (
                    "limit".to_string(),
                    "limit is given more than once".to_string()
                ),
                (
                    "limit".to_string(),
                    "limit must be a whole number".to_string()
                ),
            ]
        );
        assert_plain_words(&body);
    }
}

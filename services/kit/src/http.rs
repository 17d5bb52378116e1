//! The HTTP shell every service shares: operational endpoints, middleware,
//! problem+json 404/405 (the server loop itself is [`crate::server`]).
//!
//! [`service_router`] wraps a service's routes with
//! - `GET /healthz` (process alive), `GET /readyz` (every [`Readiness`] check
//!   passes, else 503 naming the failing ones), `GET /metrics` (Prometheus);
//! - a request body limit (413 in the JSON error format via [`crate::extract::Json`]);
//! - the correlation-id middleware and request metrics labelled by route
//!   template and status class.

use crate::error::{ApiError, ProblemType};
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::readiness::Readiness;
use crate::server::Draining;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::Instant;

/// Default request body limit.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// What the operational endpoints need.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Metrics exposed at `/metrics` and fed by the request middleware.
    pub metrics: Metrics,
    /// Checks behind `/readyz`.
    pub readiness: Readiness,
    /// Request body limit in bytes.
    pub body_limit: usize,
    /// Set once shutdown begins: `/readyz` then fails whatever the checks say.
    pub draining: Draining,
}

impl Operations {
    /// Operations with the default body limit.
    pub fn new(metrics: Metrics, readiness: Readiness) -> Self {
        Self {
            metrics,
            readiness,
            body_limit: DEFAULT_BODY_LIMIT,
            draining: Draining::default(),
        }
    }
}

/// Wraps `routes` (state already applied) with the operational endpoints and middleware.
pub fn service_router(routes: Router, operations: Operations) -> Router {
    let metrics = operations.metrics.clone();
    routes
        .merge(operational_routes(operations.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(operations.body_limit))
        .layer(middleware::from_fn_with_state(metrics, record_metrics))
        .layer(middleware::from_fn(
            crate::telemetry::correlation_middleware,
        ))
}

/// `/healthz`, `/readyz` and `/metrics` (described by [`crate::openapi`]).
pub fn operational_routes(operations: Operations) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(operations)
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses(
    (status = 200, description = "The process runs: `{\"status\": \"ok\"}`", body = Object)
))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Whether every dependency answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready: `{\"status\": \"ready\", \"checks\": {\"database\": \"ok\", …}}`", body = Object),
    (status = 503, description = "Not ready or draining: `{\"status\": \"not_ready\" or \"draining\", \"checks\": {…: \"ok\" or \"failing\"}}`", content_type = "application/json", body = Object)
))]
pub(crate) async fn readyz(State(operations): State<Operations>) -> Response {
    if operations.draining.is_draining() {
        let body = json!({ "status": "draining", "checks": {} });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let results = operations.readiness.run().await;
    let ready = results.iter().all(|(_, ok)| *ok);
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, ok)| (name.to_string(), json!(if ok { "ok" } else { "failing" })))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks });
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)
))]
pub(crate) async fn metrics_text(State(operations): State<Operations>) -> Response {
    match operations.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            ApiError::internal(anyhow::anyhow!("metrics encoding failed: {error}")).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("There is no endpoint at this path.")
}

/// A problem 405; axum adds the `Allow` header listing the route's methods.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ProblemType::METHOD_NOT_ALLOWED,
        "This endpoint does not accept this method; the Allow header lists those it does.",
    )
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The metric label of a request method: a standard method's name, else
/// `OTHER` (clients may send any token as a method; labels must stay bounded).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("OTHER", |(_, label)| label)
}

async fn record_metrics(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status: status_class(response.status()).to_string(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::routing::post;
    use tower::ServiceExt;

    /// A body with one string member.
    struct Thing {
        x: String,
    }

    impl crate::fields::FromBody for Thing {
        const FIELDS: &'static [&'static str] = &["x"];

        fn from_body(body: &mut crate::fields::BodyFields) -> Option<Self> {
            Some(Self {
                x: body.required("x")?,
            })
        }
    }

    fn app(readiness: Readiness) -> Router {
        let routes = Router::new()
            .route("/api/things/{id}", get(|| async { "thing" }))
            .route(
                "/api/things",
                post(
                    |crate::extract::Json(thing): crate::extract::Json<Thing>| async move {
                        Json(json!({ "x": thing.x }))
                    },
                ),
            );
        service_router(routes, Operations::new(Metrics::new(), readiness))
    }

    async fn call(app: &Router, request: axum::http::Request<Body>) -> (StatusCode, Response) {
        let response = app.clone().oneshot(request).await.unwrap();
        (response.status(), response)
    }

    async fn json_of(response: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap()
    }

    /// `GET uri` with no headers.
    async fn get_uri(app: &Router, uri: &str) -> (StatusCode, Response) {
        call(
            app,
            axum::http::Request::get(uri).body(Body::empty()).unwrap(),
        )
        .await
    }

    /// The `/metrics` page as text (asserting it answers 200).
    async fn scrape_metrics(app: &Router) -> String {
        let (status, response) = get_uri(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn unknown_route_is_a_problem_404() {
        let app = app(Readiness::new());
        let (status, response) = get_uri(&app, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(
            json_of(response).await,
            json!({
                "type": "https://silo.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "There is no endpoint at this path.",
            })
        );
    }

    #[tokio::test]
    async fn wrong_method_is_a_problem_405() {
        let app = app(Readiness::new());
        let (status, response) = call(
            &app,
            axum::http::Request::delete("/api/things/1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = json_of(response).await;
        assert_eq!(body["type"], "https://silo.dev/problems/method-not-allowed");
        assert_eq!(body["status"], 405);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_a_problem_413() {
        let app = app(Readiness::new());
        let body = format!("{{\"x\":\"{}\"}}", "a".repeat(DEFAULT_BODY_LIMIT));
        let request = axum::http::Request::post("/api/things")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, response) = call(&app, request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            json_of(response).await["type"],
            "https://silo.dev/problems/payload-too-large"
        );
    }

    #[tokio::test]
    async fn correlation_id_is_echoed_or_generated() {
        let app = app(Readiness::new());
        let request = axum::http::Request::get("/healthz")
            .header("X-Correlation-ID", "abc-123")
            .body(Body::empty())
            .unwrap();
        let (_, response) = call(&app, request).await;
        assert_eq!(response.headers()["x-correlation-id"], "abc-123");
        let (_, response) = get_uri(&app, "/healthz").await;
        assert!(!response.headers()["x-correlation-id"].is_empty());
    }

    struct Failing;
    impl crate::readiness::ReadinessCheck for Failing {
        fn name(&self) -> &'static str {
            "broker"
        }
        fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Err("down".to_string()) })
        }
    }

    #[tokio::test]
    async fn readyz_is_503_naming_the_failing_check() {
        let app = app(Readiness::new().with(Failing));
        let (status, response) = get_uri(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body = json_of(response).await;
        assert_eq!(body["checks"]["broker"], "failing");
        assert!(
            !body.to_string().contains("down"),
            "check errors stay in the logs"
        );
    }

    #[tokio::test]
    async fn metrics_label_requests_by_route_template() {
        let app = app(Readiness::new());
        get_uri(&app, "/api/things/42").await;
        let text = scrape_metrics(&app).await;
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/api/things/{id}",status="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("/api/things/42"));
    }

    #[tokio::test]
    async fn invented_methods_share_one_metric_label() {
        let app = app(Readiness::new());
        for invented in ["BREW", "XYZZY"] {
            call(
                &app,
                axum::http::Request::builder()
                    .method(invented)
                    .uri("/api/things/42")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        }
        let text = scrape_metrics(&app).await;
        assert!(!text.contains("BREW") && !text.contains("XYZZY"), "{text}");
        assert!(
            text.contains(
                r#"http_requests_total{method="OTHER",route="/api/things/{id}",status="4xx"} 2"#
            ),
            "{text}"
        );
    }
}

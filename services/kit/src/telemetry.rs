//! Logging set-up and the correlation-id middleware.
//!
//! `LOG_FORMAT=json` switches to JSON lines; `RUST_LOG` filters (default `info`).
//! Every request runs in a span carrying its correlation id, which comes from
//! the caller's `X-Correlation-ID` header (when well-formed) or is generated,
//! is echoed in the response header, and is available to handlers as the
//! [`CorrelationId`] extractor (to stamp outgoing events).

use crate::correlation::{CORRELATION_ID_HEADER, CorrelationId};
use axum::extract::{FromRequestParts, Request};
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::convert::Infallible;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(service: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if json {
        builder.json().flatten_event(true).try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    };
    if installed {
        tracing::info!(service, "logging initialised");
    }
}

/// Middleware: assigns the correlation id, runs the request in a span, echoes the header.
pub async fn correlation_middleware(mut request: Request, next: Next) -> Response {
    let correlation_id = CorrelationId::from_header_or_generate(
        request
            .headers()
            .get(CORRELATION_ID_HEADER)
            .and_then(|value| value.to_str().ok()),
    );
    request.extensions_mut().insert(correlation_id.clone());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        correlation_id = %correlation_id,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(correlation_id.as_str()) {
        response.headers_mut().insert(CORRELATION_ID_HEADER, value);
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<CorrelationId>() {
            Some(id) => id.clone(),
            None => CorrelationId::from_header_or_generate(
                parts
                    .headers
                    .get(CORRELATION_ID_HEADER)
                    .and_then(|value| value.to_str().ok()),
            ),
        })
    }
}

//! The HTTP server loop: how it treats slow clients, load and shutdown.
//!
//! - A client has [`ServerLimits::header_read_timeout`] to send a request's headers; hyper
//!   starts that clock whenever a connection waits for a request, so it is also how long an
//!   idle keep-alive connection stays open.
//! - A request gets [`ServerLimits::request_timeout`] to be answered (else 408, as tower-http's timeout does), and at most
//!   [`ServerLimits::max_concurrent_requests`] are handled at once (more get 503 with
//!   `Retry-After` at once, rather than queueing behind a slow database).
//! - Shutdown has two stages. [`Draining`] first: `/readyz` fails while requests are still
//!   served, so that load balancers stop sending new ones (Kubernetes removes a terminating
//!   pod from its Service's endpoints while the pod is told to stop; the proxies learn it a
//!   moment later). Then the listener closes and in-flight requests get
//!   [`ServerLimits::shutdown_timeout`] to finish before their connections are dropped.

use crate::config::{ConfigError, Env};
use crate::error::{ApiError, ProblemType};
use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The server's limits, each from its own variable (milliseconds, or a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `HTTP_HEADER_TIMEOUT_MS` (default 10 s): to send a request's headers; also the idle
    /// time after which a keep-alive connection is closed.
    pub header_read_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_MS` (default 30 s): to answer a request.
    pub request_timeout: Duration,
    /// `HTTP_MAX_CONCURRENT_REQUESTS` (default 512): requests handled at once.
    pub max_concurrent_requests: usize,
    /// `SHUTDOWN_DRAIN_MS` (default 5 s): how long requests are still served, with `/readyz`
    /// failing, after SIGTERM.
    pub drain: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (default 15 s): how long in-flight requests may take to finish
    /// once the listener is closed. Drain plus this stays under Kubernetes' default
    /// 30-second termination grace period.
    pub shutdown_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 512,
            drain: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(15),
        }
    }
}

impl ServerLimits {
    /// Reads the limits; unset variables keep their defaults, zero timeouts are refused.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = Self::default();
        let limits = Self {
            header_read_timeout: env
                .millis_or("HTTP_HEADER_TIMEOUT_MS", default.header_read_timeout)?,
            request_timeout: env.millis_or("HTTP_REQUEST_TIMEOUT_MS", default.request_timeout)?,
            max_concurrent_requests: env.parse_or(
                "HTTP_MAX_CONCURRENT_REQUESTS",
                default.max_concurrent_requests,
            )?,
            drain: env.millis_or("SHUTDOWN_DRAIN_MS", default.drain)?,
            shutdown_timeout: env.millis_or("SHUTDOWN_TIMEOUT_MS", default.shutdown_timeout)?,
        };
        let positive = [
            (
                "HTTP_HEADER_TIMEOUT_MS",
                limits.header_read_timeout.is_zero(),
            ),
            ("HTTP_REQUEST_TIMEOUT_MS", limits.request_timeout.is_zero()),
            (
                "HTTP_MAX_CONCURRENT_REQUESTS",
                limits.max_concurrent_requests == 0,
            ),
        ];
        match positive.iter().find(|(_, zero)| *zero) {
            Some((name, _)) => Err(ConfigError::Invalid {
                name: (*name).to_string(),
                reason: "must be greater than zero".into(),
            }),
            None => Ok(limits),
        }
    }
}

/// Whether the service is draining: shared by `/readyz` and whoever handles SIGTERM.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Starts draining (idempotent).
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `router` with the request timeout and the concurrency limit of `limits`.
pub fn limited(router: Router, limits: &ServerLimits) -> Router {
    let permits = Arc::new(Semaphore::new(limits.max_concurrent_requests));
    let timeout = limits.request_timeout;
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let permits = permits.clone();
        async move {
            let Ok(_permit) = permits.try_acquire_owned() else {
                return overloaded();
            };
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::new(
                    ProblemType::REQUEST_TIMEOUT,
                    "the request took too long to answer",
                )
                .into_response(),
            }
        }
    }))
}

fn overloaded() -> Response {
    let mut response = ApiError::new(
        ProblemType::OVERLOADED,
        "the service is handling as many requests as it allows; retry shortly",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Serves `router` on `listener` until `shutdown` fires, then closes the listener and waits
/// at most `limits.shutdown_timeout` for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                timeout_ms = limits.shutdown_timeout.as_millis() as u64,
                "requests still in flight at the shutdown deadline are cut off"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_when_unset_and_refuse_zero() {
        let env = Env::from_pairs(Vec::<(String, String)>::new());
        assert_eq!(
            ServerLimits::from_env(&env).unwrap(),
            ServerLimits::default()
        );
        let env = Env::from_pairs([("SHUTDOWN_DRAIN_MS", "250"), ("SHUTDOWN_TIMEOUT_MS", "0")]);
        let limits = ServerLimits::from_env(&env).unwrap();
        assert_eq!(limits.drain, Duration::from_millis(250));
        assert_eq!(limits.shutdown_timeout, Duration::ZERO);
        let env = Env::from_pairs([("HTTP_REQUEST_TIMEOUT_MS", "0")]);
        assert_eq!(
            ServerLimits::from_env(&env).unwrap_err().to_string(),
            "HTTP_REQUEST_TIMEOUT_MS is invalid: must be greater than zero"
        );
    }

    #[test]
    fn the_default_drain_and_deadline_fit_in_the_default_grace_period() {
        let limits = ServerLimits::default();
        assert!(limits.drain + limits.shutdown_timeout < Duration::from_secs(30));
    }
}

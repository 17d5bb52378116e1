//! Prometheus metrics of the kit (HTTP, outbox relay, consumers).
//!
//! Labels are bounded: route templates (never raw paths), status classes,
//! error variant names and outcome names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template (`/api/users/{id}`), or `unmatched`.
    pub route: String,
    /// `2xx`, `4xx`, ...
    pub status: String,
}

/// Labels of an HTTP latency observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template, or `unmatched`.
    pub route: String,
}

/// Labels naming an error kind (a variant name).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error variant.
    pub error: String,
}

/// Labels of a consumed message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// Durable consumer name.
    pub consumer: String,
    /// `processed`, `duplicate`, `retried`, `dead_lettered`, `ignored`.
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The kit's metric families and the registry that exposes them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request latency.
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Outbox records published.
    pub outbox_published: Counter,
    /// Outbox publish failures by error kind.
    pub outbox_failures: Family<ErrorLabels, Counter>,
    /// Seconds from outbox insert to broker ack.
    pub outbox_lag: Histogram,
    /// Consumed messages by consumer and outcome.
    pub consumer_messages: Family<ConsumerLabels, Counter>,
    /// Outbox records not yet published (as of the relay's last pass).
    pub outbox_backlog: Gauge,
    /// Age in seconds of the oldest unpublished outbox record (0 when none).
    pub outbox_oldest_unpublished_age: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Kit metrics only.
    pub fn new() -> Self {
        Self::with_extra(|_| {})
    }

    /// Kit metrics plus whatever `register` adds (service-specific metrics).
    pub fn with_extra(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let outbox_published = Counter::default();
        let outbox_failures = Family::<ErrorLabels, Counter>::default();
        let outbox_lag = latency_histogram();
        let consumer_messages = Family::<ConsumerLabels, Counter>::default();
        let outbox_backlog = Gauge::default();
        let outbox_oldest_unpublished_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "outbox_published",
            "Outbox records published to the broker",
            outbox_published.clone(),
        );
        registry.register(
            "outbox_publish_failures",
            "Outbox publish failures by error kind",
            outbox_failures.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Time from outbox insert to broker acknowledgement",
            outbox_lag.clone(),
        );
        registry.register(
            "consumer_messages",
            "Consumed messages by consumer and outcome",
            consumer_messages.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox records not yet published",
            outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox record",
            outbox_oldest_unpublished_age.clone(),
        );
        register(&mut registry);
        Self {
            registry: Arc::new(registry),
            http_requests,
            http_duration,
            outbox_published,
            outbox_failures,
            outbox_lag,
            consumer_messages,
            outbox_backlog,
            outbox_oldest_unpublished_age,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Counts a consumed message.
    pub fn count_consumed(&self, consumer: &str, outcome: &str) {
        self.consumer_messages
            .get_or_create(&ConsumerLabels {
                consumer: consumer.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts an outbox publish failure of kind `error`.
    pub fn count_outbox_failure(&self, error: &str) {
        self.outbox_failures
            .get_or_create(&ErrorLabels {
                error: error.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_metrics_carry_bounded_labels() {
        let metrics = Metrics::new();
        metrics.count_consumed("booking-service", "processed");
        metrics.count_outbox_failure("PublishTimeout");
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"consumer_messages_total{consumer="booking-service",outcome="processed"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"outbox_publish_failures_total{error="PublishTimeout"} 1"#),
            "{text}"
        );
    }
}
